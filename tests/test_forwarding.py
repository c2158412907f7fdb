"""Upstream outcomes map to what makes the provider retry, and a failure never burns the event id."""

from __future__ import annotations

import time

import pytest

EVENT = "evt_forward_1"


async def failed(gw, kit, status: int, code: str):
    resp = await gw.post("stripe", kit.stripe_body(EVENT))
    data = await resp.json()
    assert resp.status == status, data
    assert data["error"]["code"] == code
    return resp


@pytest.mark.parametrize("upstream_status", [400, 404, 500, 502])
async def test_an_upstream_error_is_502(gateway, kit, upstream_status):
    gateway.upstream.then(upstream_status)
    await failed(gateway, kit, 502, "upstream_error")
    assert gateway.upstream.attempts == 1  # an answered request is never sent twice
    await gateway.deliver_ok("stripe", kit.stripe_body(EVENT))


@pytest.mark.parametrize("upstream_status", [429, 503])
async def test_a_busy_upstream_is_503_with_its_retry_after(gateway, kit, upstream_status):
    gateway.upstream.then((upstream_status, {"Retry-After": "7"}))
    resp = await failed(gateway, kit, 503, "upstream_unavailable")
    assert resp.headers["Retry-After"] == "7"
    await gateway.deliver_ok("stripe", kit.stripe_body(EVENT))


async def test_a_busy_upstream_without_retry_after(gateway, kit):
    gateway.upstream.then(503)
    await failed(gateway, kit, 503, "upstream_unavailable")
    await gateway.deliver_ok("stripe", kit.stripe_body(EVENT))


async def test_an_upstream_that_is_down_is_503(make_gateway, kit):
    port = kit.free_port()  # nothing listens there
    gw = await make_gateway(upstream={"url": f"http://127.0.0.1:{port}/events", "retries": 2})
    started = time.monotonic()
    await failed(gw, kit, 503, "upstream_unavailable")
    assert time.monotonic() - started < 2
    assert 'result="unreachable"' in gw.metrics_text()


async def test_a_slow_upstream_is_504(make_gateway, kit):
    gw = await make_gateway(upstream={"timeout": 0.2})
    gw.upstream.then(("slow", 0.6))
    started = time.monotonic()
    await failed(gw, kit, 504, "upstream_timeout")
    assert time.monotonic() - started < 0.5
    await gw.deliver_ok("stripe", kit.stripe_body(EVENT))


@pytest.mark.parametrize("drop", ["close", "reset"])
async def test_a_dropped_connection_is_retried_once(make_gateway, kit, drop):
    gw = await make_gateway(upstream={"retries": 1})
    gw.upstream.then(drop)
    await gw.deliver_ok("stripe", kit.stripe_body(EVENT))
    assert gw.upstream.attempts == 2


@pytest.mark.parametrize("drop", ["close", "reset"])
async def test_retries_are_bounded(make_gateway, kit, drop):
    gw = await make_gateway(upstream={"retries": 1})
    gw.upstream.then(drop, drop)
    await failed(gw, kit, 503, "upstream_unavailable")
    assert gw.upstream.attempts == 2
    await gw.deliver_ok("stripe", kit.stripe_body(EVENT))


async def test_a_2xx_whose_body_is_cut_short_is_still_a_success(gateway, kit):
    gateway.upstream.then("short_answer")
    data = await gateway.expect(200, "stripe", kit.stripe_body(EVENT))
    assert data["status"] == "forwarded"
    assert gateway.upstream.attempts == 1  # accepted once: not released, not sent again
    assert (await gateway.expect(200, "stripe", kit.stripe_body(EVENT)))["status"] == "duplicate"


async def test_no_retry_when_retries_is_zero(make_gateway, kit):
    gw = await make_gateway(upstream={"retries": 0})
    gw.upstream.then("close")
    await failed(gw, kit, 503, "upstream_unavailable")
    assert gw.upstream.attempts == 1


async def test_configured_upstream_headers_are_sent(make_gateway, kit):
    gw = await make_gateway(upstream={"headers": {"X-Internal-Token": "t0k"}})
    await gw.deliver_ok("stripe", kit.stripe_body(EVENT))
    received = gw.upstream.events[-1].headers
    assert received["X-Internal-Token"] == "t0k"
    assert received["Content-Type"] == "application/cloudevents+json"


async def test_health_reports_the_upstream_state(gateway, kit):
    gateway.upstream.then(500)
    await failed(gateway, kit, 502, "upstream_error")
    health = await (await gateway.get(f"{kit.API}/health/")).json()
    assert health["status"] == "degraded" and health["upstream"]["ok"] is False
    await gateway.deliver_ok("stripe", kit.stripe_body(EVENT))
    health = await (await gateway.get(f"{kit.API}/health/")).json()
    assert health["status"] == "healthy" and health["upstream"]["ok"] is True
