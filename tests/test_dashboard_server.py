"""The dashboard on its own listener in a real ``webhook-gateway run`` process: not on the webhook
port, sends test webhooks through the webhook port, and a live tail does not hold up shutdown."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import dashboard_kit as dk
import helpers_proc as hp
import pytest

pytestmark = pytest.mark.slow


async def test_own_listener_in_a_real_process(kit, upstream, tmp_path):
    port, admin_port = kit.free_port(), kit.free_port()
    config = kit.write_config(
        tmp_path, upstream.url, listen={"host": "127.0.0.1", "port": port}, public_url=f"http://127.0.0.1:{port}",
        **dk.dashboard_overrides(listen={"host": "127.0.0.1", "port": admin_port}),
    )  # fmt: skip
    gw = await hp.GatewayProcess(config, port, tmp_path / "gw.log").start()
    try:
        admin = f"http://127.0.0.1:{admin_port}{dk.ADMIN}"
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(f"{gw.base}{dk.ADMIN}/login/") as resp:
                assert resp.status == 404  # not on the webhook port
            async with http.get(f"{admin}/login/") as resp:
                token = dk.LOGIN_TOKEN.search(await resp.text()).group(1)
            form = {"token": token, "key": dk.DASHBOARD_KEY, "next": ""}
            async with http.post(f"{admin}/login/", data=form) as resp:
                csrf = dk.CSRF_META.search(await resp.text()).group(1)  # redirected to the overview
            async with http.post(f"{admin}/providers/stripe/test/", data={"csrf": csrf}) as resp:
                assert "HTTP 200" in await resp.text()
            assert len(upstream.events) == 1  # through the webhook listener's pipeline
            stream = await http.get(f"{admin}/live/stream/")
            assert (await stream.content.readuntil(b"\n\n")).startswith(b"retry:")
            started = time.monotonic()
            await asyncio.to_thread(gw.stop)  # SIGTERM with a live tail open
            assert time.monotonic() - started < 10, "the live tail held the drain open"
            stream.close()
    finally:
        gw.stop()
