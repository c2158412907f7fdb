"""Twitch EventSub: ``Twitch-Eventsub-Message-Signature: sha256=<hex HMAC-SHA256 of
message id + timestamp + body>``, with ``Twitch-Eventsub-Message-Id`` and
``Twitch-Eventsub-Message-Timestamp`` (RFC 3339, nanoseconds); Twitch asks to refuse messages
older than 10 minutes.

Twitch publishes no Python SDK: the oracle is an independent implementation of "Verifying the
event message" in Twitch's docs. The callback verification handshake is in ``test_handshakes.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from preset_contract import NOW, URL, PresetContract, Scheme, make_provider, outcome

from gateway.providers.signer import sign

SECRET, ROTATED = "twitch-eventsub-secret-0ld", "twitch-eventsub-secret-n3w"
MSG_ID = "e76c6bd4-55c9-4987-8304-da1588d8988b"
EVENT = {
    "subscription": {"id": "f1c2a387-161a-49f9-a165-0f21d7a4e1c4", "type": "channel.cheer", "version": "1",
                     "status": "enabled", "cost": 0, "condition": {"broadcaster_user_id": "1337"}},
    "event": {"is_anonymous": False, "user_id": "1234", "user_login": "cool_user", "bits": 4200,
              "broadcaster_user_id": "1337", "message": "pogchamp ✓"},
}  # fmt: skip
CONTEXT = {"Twitch-Eventsub-Message-Type": "notification", "Twitch-Eventsub-Subscription-Type": "channel.cheer"}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def rfc3339(ts: int, fraction: str = "000000426") -> str:
    """As Twitch writes it: nanosecond precision, Z (the default fraction is below a microsecond,
    so the contract's tolerance boundaries stay exact)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction}Z"


def twitch_sign(secret: str, body: bytes, ts: int, msg_id: str = MSG_ID, fraction: str = "000000426") -> dict[str, str]:
    stamp = rfc3339(ts, fraction)
    mac = hmac.new(secret.encode(), msg_id.encode() + stamp.encode() + body, hashlib.sha256).hexdigest()
    return {
        "Twitch-Eventsub-Message-Signature": f"sha256={mac}",
        "Twitch-Eventsub-Message-Id": msg_id,
        "Twitch-Eventsub-Message-Timestamp": stamp,
    }


SCHEME = Scheme(
    name="twitch",
    secrets=(SECRET, ROTATED),
    oracle=twitch_sign,
    event=event,
    signature_header="Twitch-Eventsub-Message-Signature",
    extra_headers=("Twitch-Eventsub-Message-Id", "Twitch-Eventsub-Message-Timestamp"),
    context_headers=CONTEXT,
    tolerance=600,
    expect_id=MSG_ID,
    expect_type="channel.cheer",
)


class TestContract(PresetContract):
    scheme = SCHEME

    def test_signer_writes_what_the_oracle_writes(self, pv):
        """Our signer writes whole seconds (``...:20Z``), Twitch nanoseconds: the MAC over the
        timestamp the signer wrote is the oracle's."""
        provider = make_provider(pv, SCHEME, SCHEME.secrets)
        body = event(NOW)
        for index, secret in enumerate(SCHEME.secrets):
            ours = sign(
                provider, body, URL, now=NOW, secret_index=index, headers={"Twitch-Eventsub-Message-Id": MSG_ID}
            )
            stamp = ours["Twitch-Eventsub-Message-Timestamp"]
            mac = hmac.new(secret.encode(), MSG_ID.encode() + stamp.encode() + body, hashlib.sha256).hexdigest()
            assert ours["Twitch-Eventsub-Message-Signature"] == f"sha256={mac}"
            assert outcome(provider, ours, body) == f"accepted:{index}"


def test_the_message_id_is_signed(pv):
    body = event(NOW)
    headers = twitch_sign(SECRET, body, NOW)
    provider = make_provider(pv, SCHEME)
    assert outcome(provider, headers, body) == "accepted:0"
    assert outcome(provider, {**headers, "Twitch-Eventsub-Message-Id": MSG_ID.upper()}, body) == "invalid_signature"


def test_timestamp_precision_is_kept_as_sent(pv):
    """The timestamp is signed as written (nanoseconds); a re-formatted one is another string."""
    body = event(NOW)
    headers = twitch_sign(SECRET, body, NOW, fraction="634234626")
    shortened = headers["Twitch-Eventsub-Message-Timestamp"].replace(".634234626Z", ".634234Z")
    provider = make_provider(pv, SCHEME)
    assert outcome(provider, headers, body) == "accepted:0"
    assert outcome(provider, {**headers, "Twitch-Eventsub-Message-Timestamp": shortened}, body) == "invalid_signature"
