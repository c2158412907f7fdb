"""listen.metrics_port: /metrics on a port of its own, through a real gateway process."""

from __future__ import annotations

import types
from pathlib import Path

import aiohttp
import helpers_proc as hp
import pytest

from gateway.errors import ConfigError


async def test_metrics_only_on_the_metrics_port(tmp_path: Path, kit: types.SimpleNamespace) -> None:
    port, metrics_port = kit.free_port(), kit.free_port()
    config = kit.write_config(
        tmp_path, "http://127.0.0.1:9/events", listen={"port": port, "metrics_port": metrics_port}
    )
    gateway = await hp.GatewayProcess(config, port, tmp_path / "gateway.log").start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                assert resp.status == 200
                assert "webhook_gateway_build_info" in await resp.text()
            async with session.get(f"http://127.0.0.1:{metrics_port}/readyz") as resp:
                assert resp.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 404, "not on the webhook port"
                assert (await resp.json())["error"]["code"] == "not_found"
            async with session.get(f"http://127.0.0.1:{metrics_port}/payments/api/webhooks/providers/") as resp:
                assert resp.status == 404, "the management API is not on the metrics port"
    finally:
        gateway.stop()


def test_metrics_port_must_differ(kit: types.SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match=r"differ from listen\.port"):
        kit.build(kit.config_dict("http://127.0.0.1:9/e", listen={"port": 8080, "metrics_port": 8080}))
