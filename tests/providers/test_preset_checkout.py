"""Checkout.com: ``Cko-Signature: <hex HMAC-SHA256 of the raw body>`` keyed with the webhook's
signature key; no timestamp.

``checkout-sdk`` (the official Python SDK) manages webhooks but has no verifier: the oracle is an
independent implementation of "Set up your webhook receiver" in Checkout.com's docs.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "cko-signature-key-0ld"
ROTATED = "cko-signature-key-n3w"
EVENT = {
    "id": "evt_az5sblvku4ge3dwpztvyizgcau",
    "type": "payment_captured",
    "version": "1.0.33",
    "created_on": "2024-03-01T12:00:00Z",
    "data": {
        "id": "pay_mbabizu24mvu3mela5njyhpit4",
        "action_id": "act_y3oqhf46pyzuxjbcn2giaqnb44",
        "amount": 4200,
        "currency": "GBP",
        "reference": "ORD-5023-4E89 café",
        "processed_on": "2024-03-01T12:00:00Z",
    },
    "_links": {"self": {"href": "https://api.checkout.com/workflows/events/evt_az5sblvku4ge3dwpztvyizgcau"}},
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def checkout_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"Cko-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


SCHEME = Scheme(
    name="checkout",
    secrets=(SECRET, ROTATED),
    oracle=checkout_doc,
    event=event,
    signature_header="Cko-Signature",
    expect_id="evt_az5sblvku4ge3dwpztvyizgcau",
    expect_type="payment_captured",
    expect_payment={"id": "pay_mbabizu24mvu3mela5njyhpit4", "status": "completed",
                    "provider_status": "payment_captured", "amount": "42.00", "currency": "GBP"},
)  # fmt: skip


class TestContract(PresetContract):
    scheme = SCHEME


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("payment_approved", "processing"), ("payment_declined", "failed"), ("payment_refunded", "refunded"),
     ("payment_voided", "cancelled"), ("payment_expired", "expired"), ("payment_pending", "pending")],
)  # fmt: skip
def test_status_follows_the_event_type(pv, event_type, status):
    provider = make_provider(pv, SCHEME, (SECRET,))
    assert provider.payment is not None and provider.payment.status_map[event_type] == status


def test_the_authorization_header_alone_is_not_a_signature(pv):
    """Checkout.com can also send a static Authorization header: it proves nothing about the body."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    assert outcome(provider, {"Authorization": SECRET}, event(NOW)) == "missing_signature"
