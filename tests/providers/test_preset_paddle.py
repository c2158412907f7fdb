"""Paddle Billing: ``Paddle-Signature: ts=<unix>;h1=<hex HMAC-SHA256 of "ts:body">`` keyed with the
notification destination's secret, one ``h1`` per active secret; 5 seconds of tolerance.

Oracle: the official ``paddle-python-sdk`` (``PaddleSignature.calculate_hmac`` signs,
``Verifier`` verifies, clock included), and the test vector published in the SDK's own tests.
Where we differ from the SDK, on purpose: an unknown key (``h2=...``) is skipped, as Stripe's
and Standard Webhooks' verifiers skip unknown versions, where the SDK raises ``ValueError``.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Mapping

import pytest
from multidict import CIMultiDict
from paddle_billing.Notifications import PaddleSignature, Secret, Verifier
from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I"
ROTATED = "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_n3wR0tat3dS3cr3tK3yF0rT3st1ng0"
TRANSACTION = {
    "id": "txn_01hv8wptq8987qeep44cyrewp9",
    "status": "completed",
    "customer_id": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4",
    "currency_code": "EUR",
    "origin": "web",
    "details": {"totals": {"subtotal": "3500", "tax": "700", "total": "4200", "grand_total": "4200"}},
    "items": [{"price": {"description": "Café ✓ monthly"}, "quantity": 1}],
}
EVENT = {
    "event_id": "evt_01hv8wpts3ck3grv5ngbzx7kqv",
    "event_type": "transaction.completed",
    "occurred_at": "2024-04-12T10:18:49.621022Z",
    "notification_id": "ntf_01hv8wpvbq1yhxyppnpcf53yx0",
    "data": TRANSACTION,
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False, indent=2).encode()  # Paddle sends pretty-printed JSON


def paddle_sdk(secret: str, body: bytes, ts: int) -> dict[str, str]:
    mac = PaddleSignature.calculate_hmac(secret, f"{ts}:".encode() + body).hexdigest()
    return {"Paddle-Signature": f"ts={ts};h1={mac}"}


def paddle_accepts(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    """``Verifier().verify`` on the real clock (it reads ``time()``; the callers pass now=time())."""
    request = types.SimpleNamespace(headers=CIMultiDict(headers), body=body)
    try:
        return Verifier().verify(request, Secret(secret)) is True
    except Exception:  # ValueError on an unknown key, ConnectionRefusedError on a bad signature
        return False


SCHEME = Scheme(
    name="paddle",
    secrets=(SECRET, ROTATED),
    oracle=paddle_sdk,
    event=event,
    signature_header="Paddle-Signature",
    tolerance=5,
    sdk_accepts=paddle_accepts,
    differential=True,
    expect_id="evt_01hv8wpts3ck3grv5ngbzx7kqv",
    expect_type="transaction.completed",
    expect_payment={
        "id": "txn_01hv8wptq8987qeep44cyrewp9",
        "status": "completed",
        "provider_status": "completed",
        "amount": "42.00",
        "currency": "EUR",
    },
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_published_test_vector(pv):
    """paddle-python-sdk tests/Unit/Notification/test_Verifier.py: three secrets, a dummy h1
    before the real one, body "hello-world"."""
    header = "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"
    secrets = (
        "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
        "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
        "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh",
    )
    provider = make_provider(pv, SCHEME, secrets)
    assert outcome(provider, {"Paddle-Signature": header}, b"hello-world", now=1696195954) == "accepted:2"
    assert outcome(provider, {"Paddle-Signature": header}, b"hello-world", now=1696195960) == "stale_timestamp"
    assert outcome(provider, {"Paddle-Signature": header}, b"hello-world!", now=1696195954) == "invalid_signature"


def test_tolerance_is_the_sdks_five_seconds_both_ways():
    """The SDK's own boundaries, on the real clock: 5 s either way accepted, beyond refused."""
    now = int(time.time())
    body = event(now)
    for skew, expected in ((-3, True), (3, True), (-60, False), (60, False)):
        headers = paddle_sdk(SECRET, body, now + skew)
        assert paddle_accepts(SECRET, body, headers, now) is expected, skew


def test_several_h1_one_valid(pv):
    provider = make_provider(pv, SCHEME, (SECRET,))
    body = event(NOW)
    good = paddle_sdk(SECRET, body, NOW)["Paddle-Signature"].split(";h1=")[1]
    for header in (f"ts={NOW};h1={'0' * 64};h1={good}", f"h1={good};ts={NOW}", f"ts={NOW};h1=junk;h1={good}"):
        assert outcome(provider, {"Paddle-Signature": header}, body) == "accepted:0", header


def test_unknown_keys_are_skipped_where_the_sdk_raises(pv):
    provider = make_provider(pv, SCHEME, (SECRET,))
    body = event(NOW)
    header = paddle_sdk(SECRET, body, NOW)["Paddle-Signature"] + ";h2=" + "ab" * 32
    assert outcome(provider, {"Paddle-Signature": header}, body) == "accepted:0"
    with pytest.raises(ValueError, match="Unrecognized"):
        PaddleSignature.parse(header)


@pytest.mark.parametrize(
    "template",
    [
        "ts={ts}",
        "h1={sig}",  # no timestamp
        "ts=;h1={sig}",
        "ts={ts};h1=",
        "ts={ts},h1={sig}",  # Stripe's separator
        "t={ts};v1={sig}",  # Stripe's keys
        "ts={ts}; h1={sig}",  # the SDK does not trim items
        "ts={ts};h1={sig};ts={ts}",
        "ts={ts}000;h1={sig}",  # milliseconds: a signed but different timestamp
        "ts=+{ts};h1={sig}",
        "ts={ts}.0;h1={sig}",
        "ts={ts};H1={sig}",
        "TS={ts};h1={sig}",
        "ts={ts};h1={sig}=",
    ],
)
def test_malformed_headers(pv, template):
    provider = make_provider(pv, SCHEME, (SECRET,))
    body = event(NOW)
    sig = paddle_sdk(SECRET, body, NOW)["Paddle-Signature"].split(";h1=")[1]
    header = template.format(ts=NOW, sig=sig)
    assert outcome(provider, {"Paddle-Signature": header}, body) == "invalid_signature"
