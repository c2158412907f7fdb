"""Paystack: ``x-paystack-signature: <hex HMAC-SHA512 of the raw body>`` keyed with the account's
secret key; no timestamp and no event id (the body's hash is the dedup key).

No official Python SDK: the oracle is an independent implementation of "Verify event origin" in
Paystack's webhook docs.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "sk_test_0ld3f1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"
ROTATED = "sk_test_n3w3f1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"
EVENT = {
    "event": "charge.success",
    "data": {
        "id": 302961,
        "domain": "live",
        "status": "success",
        "reference": "qTPrJoy9Bx",
        "amount": 420000,
        "currency": "NGN",
        "channel": "card",
        "gateway_response": "Approved by Financial Institution",
        "paid_at": "2024-03-01T12:00:00.000Z",
        "metadata": {"note": "café ✓"},
        "customer": {"email": "buyer@example.com", "customer_code": "CUS_xnxdt6s1zg1f4nx"},
    },
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def paystack_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"x-paystack-signature": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()}


SCHEME = Scheme(
    name="paystack",
    secrets=(SECRET, ROTATED),
    oracle=paystack_doc,
    event=event,
    signature_header="x-paystack-signature",
    expect_id=None,  # no event id: the body's SHA-256
    expect_type="charge.success",
    expect_payment={"id": "qTPrJoy9Bx", "status": "completed", "provider_status": "success", "amount": "4200.00",
                    "currency": "NGN"},
)  # fmt: skip


class TestContract(PresetContract):
    scheme = SCHEME


def test_a_sha256_signature_is_refused(pv):
    """SHA-512, not SHA-256: a 64-character hex MAC is the wrong length."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    sha256 = hmac.new(SECRET.encode(), event(NOW), hashlib.sha256).hexdigest()
    assert outcome(provider, {"x-paystack-signature": sha256}, event(NOW)) == "invalid_signature"
