"""Razorpay: ``X-Razorpay-Signature: <hex HMAC-SHA256 of the raw body>`` keyed with the webhook
secret; ``X-Razorpay-Event-Id`` names the event (the same on every retry); no timestamp.

Oracle: the official ``razorpay`` SDK, whose ``Utility.verify_webhook_signature`` compares hex
strings as we do (it has no signer: signatures are made from Razorpay's documented algorithm and
checked by the SDK, so both directions agree).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

import razorpay
from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "rzp-webhook-secret-0ld"
ROTATED = "rzp-webhook-secret-n3w"
EVENT = {
    "entity": "event",
    "account_id": "acc_BFQ7uQEaa7j2z7",
    "event": "payment.captured",
    "contains": ["payment"],
    "payload": {
        "payment": {
            "entity": {
                "id": "pay_DESlfW9H8K9uqM",
                "entity": "payment",
                "amount": 4200,
                "currency": "INR",
                "status": "captured",
                "order_id": "order_DESlLckIVRkHWj",
                "method": "upi",
                "description": "Café ✓",
                "captured": True,
            }
        }
    },
    "created_at": 1567674606,
}
EVENT_ID = "KxyqEvMwK0GJ1Z"


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def razorpay_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-Razorpay-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def razorpay_accepts(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    value = next((v for k, v in headers.items() if k.lower() == "x-razorpay-signature"), "")
    try:
        return razorpay.Utility().verify_webhook_signature(body.decode(), value, secret) is True
    except (razorpay.errors.SignatureVerificationError, TypeError):  # TypeError: non-ASCII compared
        return False


SCHEME = Scheme(
    name="razorpay",
    secrets=(SECRET, ROTATED),
    oracle=razorpay_doc,
    event=event,
    signature_header="X-Razorpay-Signature",
    context_headers={"X-Razorpay-Event-Id": EVENT_ID},
    sdk_accepts=razorpay_accepts,
    differential=True,
    expect_id=EVENT_ID,
    expect_type="payment.captured",
    expect_payment={"id": "pay_DESlfW9H8K9uqM", "status": "completed", "provider_status": "captured",
                    "amount": "42.00", "currency": "INR"},
)  # fmt: skip


class TestContract(PresetContract):
    scheme = SCHEME


def test_documented_algorithm_is_what_the_sdk_verifies():
    body = event(NOW)
    assert razorpay_accepts(SECRET, body, razorpay_doc(SECRET, body, NOW), NOW)
    assert not razorpay_accepts(ROTATED, body, razorpay_doc(SECRET, body, NOW), NOW)


def test_the_api_key_secret_is_not_the_webhook_secret(pv):
    """Razorpay signs webhooks with the secret set on the webhook, never the API key secret."""
    provider = make_provider(pv, SCHEME, ("rzp_live_api_key_secret",))
    assert outcome(provider, razorpay_doc(SECRET, event(NOW), NOW), event(NOW)) == "invalid_signature"
