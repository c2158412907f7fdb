"""Zoom: ``x-zm-signature: v0=<hex HMAC-SHA256 of "v0:timestamp:body">`` and
``x-zm-request-timestamp``, keyed with the app's Secret Token.

Zoom publishes no Python SDK: the oracle is an independent implementation of "Verify webhook
events" in Zoom's docs (its Node sample app computes the same string). The endpoint validation
handshake is in ``test_handshakes.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET, ROTATED = "zoom-secret-token-0ld-2Qf8", "zoom-secret-token-n3w-7Hk1"
EVENT = {
    "event": "meeting.started", "event_ts": 1700000000000,
    "payload": {"account_id": "AAAAAABBBB", "object": {"id": "4200", "uuid": "4444AAAiAAAAAiAiAiiAii==",
                "topic": "Réunion ✓", "host_id": "x1yCzABCDEfg23HiJKl4mN"}},
}  # fmt: skip


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def zoom_sign(secret: str, body: bytes, ts: int) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-zm-signature": f"v0={mac}", "x-zm-request-timestamp": str(ts)}


SCHEME = Scheme(
    name="zoom",
    secrets=(SECRET, ROTATED),
    oracle=zoom_sign,
    event=event,
    signature_header="x-zm-signature",
    extra_headers=("x-zm-request-timestamp",),
    tolerance=300,
    expect_id=None,  # no event id: the body's SHA-256
    expect_type="meeting.started",
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_milliseconds_are_not_seconds(pv):
    """Zoom's header is in seconds; a millisecond value is far in the future: stale."""
    body = event(NOW)
    headers = zoom_sign(SECRET, body, NOW * 1000)
    assert outcome(make_provider(pv, SCHEME), headers, body) == "stale_timestamp"
