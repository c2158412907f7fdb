"""Shadow mode (``shadow: true`` per provider, off by default): a request that fails verification
is counted (``webhook_gateway_shadow_rejections_total{provider,code}``), logged, and forwarded
anyway with ``data.verified: false``; a verified one carries ``data.verified: true``. ``run``
warns about every shadow provider at start."""

from __future__ import annotations

import logging
import time

from gateway.cli import startup_warnings

BODY = (
    b'{"id":"evt_shadow_1","type":"payment_intent.succeeded",'
    b'"data":{"object":{"id":"pi_1","amount":100,"currency":"usd","status":"succeeded"}}}'
)


def shadow_count(gateway, code: str) -> str:
    prefix = f'webhook_gateway_shadow_rejections_total{{code="{code}",provider="stripe"}}'
    return next((ln.split()[-1] for ln in gateway.metrics_text().splitlines() if ln.startswith(prefix)), "0")


async def test_off_by_default_unsigned_is_refused(make_gateway):
    gateway = await make_gateway()
    assert gateway.settings.providers["stripe"].shadow is False
    resp = await gateway.post("stripe", BODY, signed=False)
    assert resp.status == 401
    assert gateway.upstream.events == []


async def test_unsigned_request_is_forwarded_unverified_and_counted(make_gateway, caplog):
    gateway = await make_gateway(providers={"stripe": {"shadow": True}})
    with caplog.at_level(logging.WARNING, logger="gateway.webhook"):
        resp = await gateway.post("stripe", BODY, {"Content-Type": "application/json"}, signed=False)
    answer = await resp.json()
    assert (resp.status, answer["status"]) == (200, "forwarded"), answer
    assert gateway.upstream.events[-1].event["data"]["verified"] is False
    assert shadow_count(gateway, "missing_signature") == "1.0"
    assert any(
        "shadow mode" in r.getMessage() and getattr(r, "code", "") == "missing_signature" for r in caplog.records
    )


async def test_each_failure_code_is_counted(make_gateway):
    gateway = await make_gateway(providers={"stripe": {"shadow": True}})
    stale = gateway.sign("stripe", BODY.replace(b"shadow_1", b"shadow_2"), now=time.time() - 3600)
    resp = await gateway.client.post(gateway.url("stripe"), data=BODY.replace(b"shadow_1", b"shadow_2"), headers=stale)
    assert resp.status == 200
    bad = {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}", "Content-Type": "application/json"}
    resp = await gateway.client.post(gateway.url("stripe"), data=BODY.replace(b"shadow_1", b"shadow_3"), headers=bad)
    assert resp.status == 200
    assert (shadow_count(gateway, "stale_timestamp"), shadow_count(gateway, "invalid_signature")) == ("1.0", "1.0")
    assert [e.event["data"]["verified"] for e in gateway.upstream.events] == [False, False]


async def test_verified_requests_say_so(make_gateway):
    gateway = await make_gateway(providers={"stripe": {"shadow": True}})
    await gateway.deliver_ok("stripe", BODY)
    assert gateway.upstream.events[-1].event["data"]["verified"] is True
    assert shadow_count(gateway, "missing_signature") == "0"
    normal = await make_gateway()
    await normal.deliver_ok("stripe", BODY)
    assert normal.upstream.events[-1].event["data"]["verified"] is True


async def test_shadow_never_answers_a_handshake_it_could_not_verify(make_gateway):
    """An unverified Slack url_verification goes on as an (unverified) event; no challenge echoed."""
    gateway = await make_gateway(providers={"slack": {"shadow": True}})
    body = b'{"type":"url_verification","challenge":"c-123","event_id":"Ev-hs"}'
    resp = await gateway.post("slack", body, {"Content-Type": "application/json"}, signed=False)
    answer = await resp.json()
    assert answer.get("challenge") is None and answer["status"] == "forwarded"
    assert gateway.upstream.events[-1].event["data"]["verified"] is False


def test_run_warns_about_shadow_providers(make_settings):
    settings = make_settings(providers={"stripe": {"shadow": True}, "crm": {"allow_unsigned": True}})
    warnings = startup_warnings(settings)
    assert any("stripe is in SHADOW mode" in w for w in warnings)
    assert any("crm accepts UNSIGNED" in w for w in warnings)
    assert startup_warnings(make_settings()) == []


def test_shadow_must_be_a_boolean(make_settings):
    import pytest

    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=r"providers\.stripe\.shadow: must be true or false"):
        make_settings(providers={"stripe": {"shadow": "yes"}})
