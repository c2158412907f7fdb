"""Bad input of every kind gets a clear 4xx, leaves no partial state, and the gateway keeps serving.

After each rejection the same event is delivered correctly signed and must be forwarded: a
rejected request may not leave a dedup claim (or anything else) behind.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from multidict import CIMultiDict

EVENT = "evt_bad_input_1"


async def rejected(resp, status: int, code: str) -> dict:
    data = await resp.json()
    assert resp.status == status, data
    assert resp.content_type == "application/json"
    assert data["success"] is False
    assert data["error"]["code"] == code, data
    assert data["error"]["message"]
    return data


async def still_delivers(gateway, kit, event_id: str = EVENT) -> None:
    await gateway.deliver_ok("stripe", kit.stripe_body(event_id))


def request_head(gateway, provider: str, headers: dict[str, str], extra: str = "") -> bytes:
    lines = [f"POST {gateway.url(provider)} HTTP/1.1", f"Host: {gateway.host}:{gateway.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


async def outcome_count(gateway, outcome: str) -> float:
    from gateway.app_state import SERVICES

    counter = gateway.app[SERVICES].metrics.requests.labels("stripe", outcome)
    return counter._value.get()


async def wait_for_outcome(gateway, outcome: str, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while await outcome_count(gateway, outcome) < 1:
        assert time.monotonic() < deadline, gateway.metrics_text()
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- routing


async def test_unknown_provider_is_404(gateway, kit):
    resp = await gateway.client.post(
        gateway.url("paypal"), data=kit.stripe_body(EVENT), headers=gateway.sign("stripe", kit.stripe_body(EVENT))
    )
    await rejected(resp, 404, "unknown_provider")
    await still_delivers(gateway, kit)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_on_a_webhook_url_are_405_with_allow(gateway, kit, method):
    resp = await gateway.client.request(method, gateway.url("stripe"))
    await rejected(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"
    await still_delivers(gateway, kit)


async def test_unknown_path_is_a_json_404(gateway, kit):
    resp = await gateway.client.get("/nope")
    await rejected(resp, 404, "not_found")
    resp = await gateway.client.post("/metrics")
    await rejected(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]
    await still_delivers(gateway, kit)


# --------------------------------------------------------------------------- body size and time


async def test_oversize_content_length_is_refused_without_reading_the_body(gateway, kit):
    headers = {"Content-Type": "application/json", "Content-Length": str(10 * 1024**3)}  # 10 GiB declared
    started = time.monotonic()
    status, resp_headers, body = await kit.raw_exchange(
        gateway.host, gateway.port, [request_head(gateway, "stripe", headers), b'{"id":"evt_'], timeout=2.0
    )
    assert time.monotonic() - started < 1.0
    assert status == 413
    assert b'"body_too_large"' in body
    assert resp_headers["content-type"].startswith("application/json")
    await still_delivers(gateway, kit)


async def test_an_oversize_body_is_not_invited_with_100_continue(gateway, kit):
    headers = {"Content-Type": "application/json", "Content-Length": str(10 * 1024**3), "Expect": "100-continue"}
    status, _, body = await kit.raw_exchange(gateway.host, gateway.port, [request_head(gateway, "stripe", headers)])
    assert status == 413  # the final answer comes first: no "100 Continue" asking for 10 GiB
    assert b'"body_too_large"' in body
    headers["Content-Length"] = "10"
    status, _, body = await kit.raw_exchange(gateway.host, gateway.port, [request_head(gateway, "paypal", headers)])
    assert status == 404


async def test_a_body_that_fits_is_invited_with_100_continue(gateway, kit):
    body = kit.stripe_body(EVENT)
    resp = await gateway.client.post(
        gateway.url("stripe"), data=body, headers=gateway.sign("stripe", body), expect100=True
    )
    assert resp.status == 200, await resp.text()
    assert gateway.upstream.ids() == [EVENT]


async def test_per_provider_body_limit(make_gateway, kit):
    gw = await make_gateway(providers={"stripe": {"max_body_bytes": 2000}})
    body = kit.stripe_body(EVENT)[:-1] + b',"pad":"' + b"x" * 2000 + b'"}'
    resp = await gw.post("stripe", body)
    await rejected(resp, 413, "body_too_large")
    github_headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}
    await gw.deliver_ok("github", b'{"pad":"' + b"x" * 4000 + b'"}', github_headers)  # default 1 MiB
    await still_delivers(gw, kit)


async def test_chunked_body_over_the_limit_is_413(make_gateway, kit):
    gw = await make_gateway(limits={"max_body_bytes": 4096})
    body = kit.stripe_body(EVENT)[:-1] + b',"pad":"' + b"x" * 8192 + b'"}'

    async def chunks():
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]

    headers = gw.sign("stripe", body)
    resp = await gw.client.post(gw.url("stripe"), data=chunks(), headers=headers)
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    await rejected(resp, 413, "body_too_large")
    await still_delivers(gw, kit)


async def test_chunked_body_under_the_limit_is_accepted(gateway, kit):
    body = kit.stripe_body(EVENT)

    async def chunks():
        for i in range(0, len(body), 16):
            yield body[i : i + 16]

    resp = await gateway.client.post(gateway.url("stripe"), data=chunks(), headers=gateway.sign("stripe", body))
    assert resp.status == 200, await resp.text()
    assert gateway.upstream.ids() == [EVENT]


async def test_a_stalled_body_times_out_with_408(make_gateway, kit):
    gw = await make_gateway(limits={"body_timeout": 0.3})
    body = kit.stripe_body(EVENT)
    headers = {**gw.sign("stripe", body), "Content-Length": str(len(body))}
    started = time.monotonic()
    status, _, resp_body = await kit.raw_exchange(
        gw.host, gw.port, [request_head(gw, "stripe", headers), body[:20]], timeout=3.0
    )
    assert 0.25 < time.monotonic() - started < 2.0
    assert status == 408
    assert b'"body_timeout"' in resp_body
    await still_delivers(gw, kit)


async def test_a_truncated_body_leaves_no_claim_and_the_gateway_keeps_serving(gateway, kit):
    body = kit.stripe_body(EVENT)
    headers = {**gateway.sign("stripe", body), "Content-Length": str(len(body))}
    _, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(request_head(gateway, "stripe", headers) + body[: len(body) // 2])
    await writer.drain()
    writer.close()  # the connection ends mid-body
    await writer.wait_closed()
    await wait_for_outcome(gateway, "truncated_body")
    assert gateway.upstream.attempts == 0
    await still_delivers(gateway, kit)


# --------------------------------------------------------------------------- signatures


def _stripe_cases():
    sig = "t={ts},v1=" + "ab" * 32
    return {
        "missing": (lambda h: h.pop("Stripe-Signature"), "missing_signature"),
        "empty": (lambda h: h.__setitem__("Stripe-Signature", ""), "missing_signature"),
        "garbage": (lambda h: h.__setitem__("Stripe-Signature", "not a signature"), "invalid_signature"),
        "wrong_mac": (
            lambda h: h.__setitem__("Stripe-Signature", sig.format(ts=int(time.time()))),
            "invalid_signature",
        ),
        "not_hex": (
            lambda h: h.__setitem__("Stripe-Signature", f"t={int(time.time())},v1=zz{'0' * 62}"),
            "invalid_signature",
        ),
        "no_timestamp": (
            lambda h: h.__setitem__("Stripe-Signature", h["Stripe-Signature"].split(",", 1)[1]),
            "invalid_signature",
        ),
        "bad_timestamp": (
            lambda h: h.__setitem__("Stripe-Signature", "t=soon," + h["Stripe-Signature"].split(",", 1)[1]),
            "invalid_signature",
        ),
    }


@pytest.mark.parametrize("case", list(_stripe_cases()))
async def test_bad_stripe_signatures_are_401(gateway, kit, case):
    mutate, code = _stripe_cases()[case]
    body = kit.stripe_body(EVENT)
    headers = gateway.sign("stripe", body)
    mutate(headers)
    resp = await gateway.client.post(gateway.url("stripe"), data=body, headers=headers)
    await rejected(resp, 401, code)
    assert gateway.upstream.attempts == 0
    await still_delivers(gateway, kit)


async def test_a_duplicated_signature_header_is_401(gateway, kit):
    body = kit.stripe_body(EVENT)
    signed = gateway.sign("stripe", body)
    headers = CIMultiDict(signed)
    headers.add("Stripe-Signature", signed["Stripe-Signature"])
    resp = await gateway.client.post(gateway.url("stripe"), data=body, headers=headers)
    await rejected(resp, 401, "invalid_signature")
    await still_delivers(gateway, kit)


async def test_a_body_changed_after_signing_is_401(gateway, kit):
    body = kit.stripe_body(EVENT)
    headers = gateway.sign("stripe", body)
    resp = await gateway.client.post(gateway.url("stripe"), data=body.replace(b"2000", b"9000"), headers=headers)
    await rejected(resp, 401, "invalid_signature")
    await still_delivers(gateway, kit)


async def test_github_signature_without_its_prefix_is_401(gateway, kit):
    body = b'{"zen":"Keep it logically awesome."}'
    headers = gateway.sign("github", body, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "gh-1"})
    headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].removeprefix("sha256=")
    resp = await gateway.client.post(gateway.url("github"), data=body, headers=headers)
    await rejected(resp, 401, "invalid_signature")
    headers = gateway.sign("github", body, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "gh-1"})
    await gateway.deliver_ok("github", body, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "gh-1"})


@pytest.mark.parametrize("provider", ["stripe", "slack", "standard-webhooks"])
@pytest.mark.parametrize("skew", [-400, 400])
async def test_stale_or_future_timestamps_are_401(gateway, kit, provider, skew):
    bodies = {
        "stripe": kit.stripe_body(EVENT),
        "slack": b'{"type":"event_callback","event_id":"Ev1","event":{"type":"message"}}',
        "standard-webhooks": b'{"type":"invoice.paid"}',
    }
    extra = {"webhook-id": "msg_stale_1"} if provider == "standard-webhooks" else None
    resp = await gateway.post(provider, bodies[provider], extra, now=time.time() + skew)
    await rejected(resp, 401, "stale_timestamp")
    await gateway.deliver_ok(provider, bodies[provider], extra)


# --------------------------------------------------------------------------- bodies that are not JSON


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"' + EVENT.encode() + b'","type":"payment_intent.succeeded",',  # cut short
        b'{"id":"' + EVENT.encode() + b'","note":"caf\xe9"}',  # Latin-1, not UTF-8
        b"\xef\xbb\xbf" + b'{"id":"' + EVENT.encode() + b'"}',  # a UTF-8 BOM
        b"",
        b"[" * 100_000,  # deep nesting
        b'{"id":"' + EVENT.encode() + b'","amount":NaN}',  # Python's json takes it; JSON does not
        b'{"id":"' + EVENT.encode() + b'","amount":-Infinity}',
    ],
    ids=["truncated_json", "latin1", "bom", "empty", "deep", "nan", "infinity"],
)
async def test_invalid_json_with_a_valid_signature_is_400(gateway, kit, body):
    resp = await gateway.post("stripe", body)
    await rejected(resp, 400, "invalid_json")
    assert gateway.upstream.attempts == 0
    await still_delivers(gateway, kit)


async def test_invalid_json_for_a_canonicalizing_provider_is_400(gateway, kit):
    headers = {"x-nowpayments-sig": "00" * 64, "Content-Type": "application/json"}
    resp = await gateway.client.post(gateway.url("nowpayments"), data=b'{"payment_id": 1,', headers=headers)
    await rejected(resp, 400, "invalid_json")
    await still_delivers(gateway, kit)


async def test_a_signed_body_with_a_lone_surrogate_is_a_400_not_a_500(gateway):
    """An escaped lone surrogate is JSON syntax but not Unicode text: the strict parser refuses it
    with a clear 400 (never a 500 from an encoder further down), and the gateway goes on serving."""
    for body in (
        b'{"id":"evt_\\ud800","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}',
        b'{"id":"evt_sur_2","type":"x\\udc00","data":{"object":{"id":"pi_1"}}}',
    ):
        data = await gateway.expect(400, "stripe", body)
        assert data["error"]["code"] == "invalid_json"
    ok = await gateway.expect(200, "stripe", b'{"id":"evt_sur_ok","type":"t","data":{"object":{"id":"pi_1"}}}')
    assert ok["status"] == "forwarded"
