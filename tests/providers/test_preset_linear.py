"""Linear: ``Linear-Signature: <hex HMAC-SHA256 of the raw body>``; the signed body carries
``webhookTimestamp`` (unix milliseconds), refused beyond 60 seconds either way; ``Linear-Delivery``
names the delivery, ``Linear-Event`` the entity type.

The official SDK is the npm package @linear/sdk (``LinearWebhookClient``), not on PyPI: the oracle
is an independent implementation of Linear's webhook docs, with the SDK's rule for the clock
(``Math.abs(Date.now() - webhookTimestamp) > 60 * 1000`` is refused).
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "lin_wh_0ldS3cr3tF0rT3st1ng"
ROTATED = "lin_wh_n3wS3cr3tF0rT3st1ng"
DELIVERY = "9a2c4e6f-1b3d-4200-8f7e-5d6c4b3a2910"


def document(ts_ms: object) -> dict[str, object]:
    return {
        "action": "create",
        "type": "Issue",
        "createdAt": "2024-03-01T12:00:00.000Z",
        "organizationId": "2d9f3f0e-5f5b-4b9f-9a48-3d2c1b0a9f8e",
        "url": "https://linear.app/acme/issue/ENG-4200",
        "webhookId": "0b4c5d6e-7f80-4a1b-9c2d-3e4f5a6b7c8d",
        "webhookTimestamp": ts_ms,
        "data": {"id": "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", "identifier": "ENG-4200", "title": "Café ✓"},
    }


def event(ts: int) -> bytes:
    return json.dumps(document(ts * 1000), ensure_ascii=False).encode()


def linear_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"Linear-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


SCHEME = Scheme(
    name="linear",
    secrets=(SECRET, ROTATED),
    oracle=linear_doc,
    event=event,
    signature_header="Linear-Signature",
    context_headers={"Linear-Delivery": DELIVERY, "Linear-Event": "Issue"},
    tolerance=60,
    expect_id=DELIVERY,
    expect_type="Issue",
)


class TestContract(PresetContract):
    scheme = SCHEME


def _signed(doc: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(doc).encode()
    return body, linear_doc(SECRET, body, NOW)


@pytest.mark.parametrize(
    ("ts_ms", "expected"),
    [
        (NOW * 1000 + 60_000, "accepted:0"),  # the SDK's boundary: exactly a minute is still fresh
        (NOW * 1000 - 60_000, "accepted:0"),
        (NOW * 1000 - 60_001, "stale_timestamp"),
        (NOW * 1000 + 60_001, "stale_timestamp"),
        (NOW, "stale_timestamp"),  # seconds where milliseconds belong: 1970
        (str(NOW * 1000), "accepted:0"),  # a JSON string of digits reads the same
        (None, "invalid_signature"),
        (NOW * 1000 + 0.5, "invalid_signature"),
        (-1, "invalid_signature"),
        (True, "invalid_signature"),
        ("1700000000000.0", "invalid_signature"),
        ({"ms": NOW * 1000}, "invalid_signature"),
    ],
)
def test_webhook_timestamp_in_the_signed_body(pv, ts_ms, expected):
    provider = make_provider(pv, SCHEME, (SECRET,))
    body, headers = _signed(document(ts_ms))
    assert outcome(provider, headers, body) == expected


def test_missing_webhook_timestamp_is_invalid(pv):
    doc = document(NOW * 1000)
    del doc["webhookTimestamp"]
    body, headers = _signed(doc)
    assert outcome(make_provider(pv, SCHEME, (SECRET,)), headers, body) == "invalid_signature"


def test_the_timestamp_is_read_only_after_the_signature_matched(pv):
    """A forged body with a fresh timestamp is invalid, not stale; a signed body that is not JSON
    cannot carry the timestamp (the gateway refuses it as invalid_json)."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    body, headers = _signed(document(NOW * 1000))
    assert outcome(provider, headers, body.replace(b"ENG-4200", b"ENG-4201")) == "invalid_signature"
    not_json = b"webhookTimestamp=1700000000000"
    assert outcome(provider, linear_doc(SECRET, not_json, NOW), not_json) == "invalid_json"
