"""Coinbase Commerce: ``X-CC-Webhook-Signature: <hex HMAC-SHA256 of the raw body>`` keyed with the
shared webhook secret; no timestamp.

Oracle: the official ``coinbase-commerce`` package (``WebhookSignature._compute_signature`` signs,
``WebhookSignature.verify_sig_header`` verifies, comparing hex strings as we do).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from coinbase_commerce.error import SignatureVerificationError
from coinbase_commerce.webhook import WebhookSignature
from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "0f1e2d3c-coinbase-shared-secret"
ROTATED = "4b5a6978-rotated-shared-secret"
EVENT = {
    "id": 7,
    "scheduled_for": "2024-03-01T12:00:00Z",
    "attempt_number": 1,
    "event": {
        "id": "24934862-d980-46cb-9402-43c81b0cdba6",
        "resource": "event",
        "type": "charge:confirmed",
        "api_version": "2018-03-22",
        "created_at": "2024-03-01T12:00:00Z",
        "data": {
            "id": "f765421f-2a2c-4f1e-a4b5-1d5d1d4e2c8b",
            "code": "66BEOV2A",
            "name": "The Sovereign Individual — café",
            "pricing": {
                "local": {"amount": "42.00", "currency": "USD"},
                "bitcoin": {"amount": "0.00064200", "currency": "BTC"},
            },
            "timeline": [
                {"time": "2024-03-01T11:50:00Z", "status": "NEW"},
                {"time": "2024-03-01T12:00:00Z", "status": "COMPLETED"},
            ],
            "metadata": {"order_id": "order-4200"},
        },
    },
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def coinbase_sdk(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-CC-Webhook-Signature": WebhookSignature._compute_signature(body.decode(), secret)}


def coinbase_accepts(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    value = next((v for k, v in headers.items() if k.lower() == "x-cc-webhook-signature"), "")
    try:
        return WebhookSignature.verify_sig_header(body.decode(), value, secret) is True
    except (SignatureVerificationError, TypeError, UnicodeError):  # TypeError: non-ASCII compared
        return False


SCHEME = Scheme(
    name="coinbase",
    secrets=(SECRET, ROTATED),
    oracle=coinbase_sdk,
    event=event,
    signature_header="X-CC-Webhook-Signature",
    sdk_accepts=coinbase_accepts,
    differential=True,
    expect_id="24934862-d980-46cb-9402-43c81b0cdba6",
    expect_type="charge:confirmed",
    expect_payment={
        "id": "f765421f-2a2c-4f1e-a4b5-1d5d1d4e2c8b",
        "status": "completed",
        "provider_status": "charge:confirmed",
        "amount": "42.00",
        "currency": "USD",
    },
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_retry_is_the_same_event(pv):
    """A retry changes the delivery (attempt_number, top-level id) and is re-signed, but keeps
    event.id: the catalog deduplicates on event.id, not on the body."""
    retry = json.loads(event(NOW))
    retry.update(id=8, attempt_number=2)
    body = json.dumps(retry).encode()
    provider = make_provider(pv, SCHEME, (SECRET,))
    assert outcome(provider, coinbase_sdk(SECRET, body, NOW), body) == "accepted:0"
    assert [ref.path for ref in provider.event_id] == [("event", "id")]


@pytest.mark.parametrize("prefix", ["sha256=", "v1=", "t=1700000000,v1="])
def test_prefixed_signature_is_refused(pv, prefix):
    provider = make_provider(pv, SCHEME, (SECRET,))
    header = {"X-CC-Webhook-Signature": prefix + coinbase_sdk(SECRET, event(NOW), NOW)["X-CC-Webhook-Signature"]}
    assert outcome(provider, header, event(NOW)) == "invalid_signature"
