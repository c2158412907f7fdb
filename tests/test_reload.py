"""A config reload keeps what needs a restart, says so, and never runs a combination the loader
would refuse (the new file is checked alone, then again beside the values kept)."""

from __future__ import annotations

import dataclasses

from gateway.app_state import SERVICES
from gateway.reload import apply, reload


async def test_a_reload_that_would_break_a_rule_beside_kept_values_is_refused(make_gateway, kit, tmp_path):
    """upstream.timeout needs a restart: a new file with a shorter timeout and a dedup lease in
    between passes alone, but the running timeout (10 s) would outlast that lease (5 s), and a
    provider's retry could claim the id mid-forward and send the event twice."""
    gw = await make_gateway(upstream={"timeout": 10.0}, dedup={"lease": 15})
    services = gw.app[SERVICES]
    path = kit.write_config(tmp_path, gw.upstream.url, upstream={"timeout": 4.0}, dedup={"lease": 5})
    services.settings = dataclasses.replace(services.settings, file=str(path))
    assert reload(gw.app) is False
    assert (services.settings.dedup.lease, services.settings.upstream.timeout) == (15, 10.0)
    assert 'webhook_gateway_config_reloads_total{result="error"} 1.0' in gw.metrics_text()


async def test_connection_limits_passthrough_and_shutdown_wait_for_a_restart(make_gateway, kit, tmp_path):
    """Read once by what was built at start: a change is reported as needing a restart (it was
    taken silently, and nothing changed), and the running values stay."""
    gw = await make_gateway()
    services = gw.app[SERVICES]
    before = services.settings
    path = kit.write_config(
        tmp_path, gw.upstream.url, limits={"max_connections": 2, "header_timeout": 1}, shutdown={"timeout": 3},
        listen={"metrics_port": 19999},
    )  # fmt: skip
    from gateway.settings.loader import load_config

    pending = apply(gw.app, load_config(str(path)))
    assert {"max_connections", "header_timeout", "shutdown_timeout", "metrics_port"} <= set(pending)
    kept = services.settings
    assert (kept.max_connections, kept.header_timeout, kept.shutdown_timeout, kept.metrics_port) == (
        before.max_connections, before.header_timeout, before.shutdown_timeout, before.metrics_port,
    )  # fmt: skip
