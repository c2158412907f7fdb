"""Square: ``x-square-hmacsha256-signature: <base64 HMAC-SHA256 of notification URL + body>``,
keyed with the subscription's signature key.

Oracle: the official ``squareup`` SDK's ``square.utils.webhooks_helper.verify_signature``
(it verifies; it has no signer, so signatures are made from the documented algorithm and every
one is checked by the SDK). The URL is the one configured in Square: the gateway builds it from
``public_url``, or from a trusted proxy's X-Forwarded-Proto/-Host (both tested here).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome
from square.utils.webhooks_helper import verify_signature

HEADER = "x-square-hmacsha256-signature"
SECRET, ROTATED = "Fn3Ua-sq-signature-key-0ld", "Fn3Ua-sq-signature-key-n3w"
EVENT = {
    "merchant_id": "6SSW7HV8K2ST5", "type": "payment.updated", "event_id": "13b867cf-db3d-4b1c-90b6-2f32a9d78124",
    "created_at": "2023-11-14T22:13:20.106Z",
    "data": {"type": "payment", "id": "hYy9pRFVxpDsO1FB05SunFWUe9JZY", "object": {"payment": {
        "id": "hYy9pRFVxpDsO1FB05SunFWUe9JZY", "status": "COMPLETED", "note": "café ✓",
        "amount_money": {"amount": 4200, "currency": "USD"}}}},
}  # fmt: skip


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def square_sign(secret: str, body: bytes, ts: int, url: str = URL) -> dict[str, str]:
    mac = hmac.new(secret.encode(), url.encode() + body, hashlib.sha256).digest()
    return {HEADER: base64.b64encode(mac).decode()}


def sdk_accepts(secret: str, body: bytes, headers, now: float, url: str = URL) -> bool:
    try:
        values = [v for k, v in headers.items() if k.lower() == HEADER]
        return len(values) == 1 and verify_signature(
            request_body=body.decode("utf-8"), signature_header=values[0], signature_key=secret, notification_url=url
        )
    except (UnicodeDecodeError, ValueError):
        return False


SCHEME = Scheme(
    name="square",
    secrets=(SECRET, ROTATED),
    oracle=square_sign,
    event=event,
    signature_header=HEADER,
    sdk_accepts=sdk_accepts,
    differential=True,
    expect_id=EVENT["event_id"],
    expect_type="payment.updated",
    expect_payment={"id": "hYy9pRFVxpDsO1FB05SunFWUe9JZY", "status": "completed", "provider_status": "COMPLETED",
                    "amount": "42.00", "currency": "USD"},
)  # fmt: skip


class TestContract(PresetContract):
    scheme = SCHEME

    async def test_delivery_through_the_gateway(self, make_gateway):
        gateway = await make_gateway(providers={"square": {"secrets": [SECRET]}})
        url = gateway.settings.webhook_url("square")
        body = event(NOW)
        headers = {"Content-Type": "application/json", **square_sign(SECRET, body, NOW, url)}
        assert sdk_accepts(SECRET, body, headers, NOW, url)
        resp = await gateway.client.post(gateway.url("square"), data=body, headers=headers)
        answer = await resp.json()
        assert (resp.status, answer["status"], answer["event_id"]) == (200, "forwarded", EVENT["event_id"])
        assert gateway.upstream.events[-1].event["data"]["payment"] == dict(SCHEME.expect_payment or {})
        again = await gateway.client.post(gateway.url("square"), data=body, headers=headers)
        assert (await again.json())["status"] == "duplicate"


def test_the_url_is_signed(pv):
    provider = make_provider(pv, SCHEME)
    body = event(NOW)
    for other in (URL + "?x=1", URL.replace("https", "http"), URL.rstrip("/"), URL.upper()):
        assert outcome(provider, square_sign(SECRET, body, NOW, other), body) == "invalid_signature", other
    assert outcome(provider, square_sign(SECRET, body, NOW), body) == "accepted:0"


async def test_url_from_the_forwarded_headers_of_a_trusted_proxy(make_gateway):
    """Behind a TLS-terminating proxy, Square calls https://hooks.example.com/...: with
    ``url_from_forwarded_headers`` that is the URL verified, but only for a trusted peer."""
    public = "https://hooks.example.com/payments/api/webhooks/square/"
    body = event(NOW)
    headers = {
        "Content-Type": "application/json", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com",
        **square_sign(SECRET, body, int(time.time()), public),
    }  # fmt: skip
    assert sdk_accepts(SECRET, body, headers, NOW, public)
    trusted = await make_gateway(
        trusted_proxies=["127.0.0.1/32", "::1/128"],
        providers={"square": {"secrets": [SECRET], "url_from_forwarded_headers": True}},
    )
    resp = await trusted.client.post(trusted.url("square"), data=body, headers=headers)
    assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")

    untrusted = await make_gateway(providers={"square": {"secrets": [SECRET], "url_from_forwarded_headers": True}})
    resp = await untrusted.client.post(untrusted.url("square"), data=body, headers=headers)
    assert (resp.status, (await resp.json())["error"]["code"]) == (401, "invalid_signature")

    switched_off = await make_gateway(
        trusted_proxies=["127.0.0.1/32", "::1/128"], providers={"square": {"secrets": [SECRET]}}
    )
    resp = await switched_off.client.post(switched_off.url("square"), data=body, headers=headers)
    assert resp.status == 401


async def test_gateway_wide_forwarded_headers_switch(make_gateway):
    public = "https://edge.example.org/payments/api/webhooks/square/"
    body = event(NOW)
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "edge.example.org",
        **square_sign(SECRET, body, NOW, public),
    }
    gateway = await make_gateway(
        trusted_proxies=["127.0.0.1/32", "::1/128"],
        url_from_forwarded_headers=True,
        providers={"square": {"secrets": [SECRET]}},
    )
    resp = await gateway.client.post(gateway.url("square"), data=body, headers=headers)
    assert resp.status == 200
    # a provider may opt out of the gateway-wide switch
    gateway = await make_gateway(
        trusted_proxies=["127.0.0.1/32", "::1/128"], url_from_forwarded_headers=True,
        providers={"square": {"secrets": [SECRET], "url_from_forwarded_headers": False}},
    )  # fmt: skip
    resp = await gateway.client.post(gateway.url("square"), data=body, headers=headers)
    assert resp.status == 401


async def test_public_url_with_a_path_prefix(make_gateway):
    """public_url may carry the prefix a proxy strips; it is part of the signed URL."""
    public = "https://example.com/hooks/payments/api/webhooks/square/"
    body = event(NOW)
    gateway = await make_gateway(public_url="https://example.com/hooks", providers={"square": {"secrets": [SECRET]}})
    resp = await gateway.client.post(gateway.url("square"), data=body, headers=square_sign(SECRET, body, NOW, public))
    assert resp.status == 200
