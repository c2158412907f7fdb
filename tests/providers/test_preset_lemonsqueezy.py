"""Lemon Squeezy: ``X-Signature: <hex HMAC-SHA256 of the raw body>`` keyed with the webhook's
signing secret; no timestamp and no event id (the body's hash is the dedup key).

No official Python SDK (the ``lemonsqueezy`` package on PyPI is unofficial and has no verifier):
the oracle is an independent implementation of "Signing requests" in Lemon Squeezy's docs.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "lemon-signing-secret-0ld"
ROTATED = "lemon-signing-secret-n3w"
EVENT = {
    "meta": {"event_name": "order_created", "test_mode": True, "custom_data": {"cart": "café ✓"}},
    "data": {
        "type": "orders",
        "id": "1234567",
        "attributes": {
            "store_id": 1,
            "identifier": "104e18a2-d755-4d4b-80c4-a6c1dcbe1c10",
            "status": "paid",
            "currency": "USD",
            "subtotal": 4200,
            "total": 4200,
            "user_email": "buyer@example.com",
        },
    },
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def lemonsqueezy_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


SCHEME = Scheme(
    name="lemonsqueezy",
    secrets=(SECRET, ROTATED),
    oracle=lemonsqueezy_doc,
    event=event,
    signature_header="X-Signature",
    context_headers={"X-Event-Name": "order_created"},
    expect_id=None,  # no event id: the body's SHA-256
    expect_type="order_created",
    expect_payment={"id": "1234567", "status": "completed", "provider_status": "paid", "amount": "42.00",
                    "currency": "USD"},
)  # fmt: skip


class TestContract(PresetContract):
    scheme = SCHEME


def test_event_name_falls_back_to_the_header(pv):
    provider = make_provider(pv, SCHEME, (SECRET,))
    assert [(ref.path, ref.header) for ref in provider.event_type] == [(("meta", "event_name"), None),
                                                                      ((), "X-Event-Name")]  # fmt: skip


def test_signature_is_not_base64(pv):
    import base64

    provider = make_provider(pv, SCHEME, (SECRET,))
    mac = hmac.new(SECRET.encode(), event(NOW), hashlib.sha256).digest()
    assert outcome(provider, {"X-Signature": base64.b64encode(mac).decode()}, event(NOW)) == "invalid_signature"
