"""Intercom: ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the raw body>`` keyed with the app's
client_secret; no timestamp. A retry keeps the notification id (the dedup key).

No official Python verifier: the oracle is an independent implementation of Intercom's webhook
docs ("signed notifications").
"""

from __future__ import annotations

import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "intercom-client-secret-0ld"
ROTATED = "intercom-client-secret-n3w"
EVENT = {
    "type": "notification_event",
    "app_id": "ecahpwf5",
    "id": "notif_ccd8a4d2-c73e-4f9c-90a4-f53e1e8b7f2b",
    "topic": "conversation.user.created",
    "delivery_status": "pending",
    "delivery_attempts": 1,
    "delivered_at": 0,
    "first_sent_at": 1700000000,
    "created_at": 1700000000,
    "data": {
        "type": "notification_event_data",
        "item": {"type": "conversation", "id": "4200", "state": "open", "source": {"body": "café ✓"}},
    },
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def intercom_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


SCHEME = Scheme(
    name="intercom",
    secrets=(SECRET, ROTATED),
    oracle=intercom_doc,
    event=event,
    signature_header="X-Hub-Signature",
    expect_id="notif_ccd8a4d2-c73e-4f9c-90a4-f53e1e8b7f2b",
    expect_type="conversation.user.created",
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_github_style_sha256_header_is_not_intercoms(pv):
    provider = make_provider(pv, SCHEME, (SECRET,))
    sha256 = "sha256=" + hmac.new(SECRET.encode(), event(NOW), hashlib.sha256).hexdigest()
    assert outcome(provider, {"X-Hub-Signature": sha256}, event(NOW)) == "invalid_signature"
    assert outcome(provider, {"X-Hub-Signature-256": sha256}, event(NOW)) == "missing_signature"


def test_a_retry_is_the_same_notification(pv):
    retry = {**EVENT, "delivery_attempts": 2}
    body = json.dumps(retry).encode()
    provider = make_provider(pv, SCHEME, (SECRET,))
    assert outcome(provider, intercom_doc(SECRET, body, NOW), body) == "accepted:0"
    assert [ref.path for ref in provider.event_id] == [("id",)]
