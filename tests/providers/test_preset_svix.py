"""Svix: ``svix-signature: v1,<base64 HMAC-SHA256 of "svix-id.svix-timestamp.body">`` keyed with
the base64 after ``whsec_``; space-separated signatures while a secret is rotated.

Oracle: the official ``svix`` package (``Webhook.sign`` and ``Webhook.verify``), and the example
of Svix's manual-verification guide. svix-python (through standardwebhooks) base64-decodes
leniently before comparing; we accept only the canonical spelling Svix writes (see
``test_preset_standard_webhooks.py`` for the same choice), so the per-character differential test
does not apply here.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime

import svix.webhooks
from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROTATED = "whsec_" + base64.b64encode(b"rotated-in-svix-signing-key-32b!").decode()
MSG_ID = "msg_2Yx8svix"


def event(ts: int) -> bytes:
    return b'{"type":"invoice.paid","data":{"id":"inv_1","amount":4200,"currency":"EUR","note":"caf\xc3\xa9"}}'


def svix_sdk(secret: str, body: bytes, ts: int) -> dict[str, str]:
    signature = svix.webhooks.Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(ts, UTC), body.decode())
    return {"svix-id": MSG_ID, "svix-timestamp": str(ts), "svix-signature": signature}


def svix_accepts(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    try:
        svix.webhooks.Webhook(secret).verify(body, dict(headers))
    except Exception:  # the SDK raises ValueError, not only WebhookVerificationError, on odd input
        return False
    return True


SCHEME = Scheme(
    name="svix",
    secrets=(SECRET, ROTATED),
    oracle=svix_sdk,
    event=event,
    signature_header="svix-signature",
    extra_headers=("svix-timestamp", "svix-id"),
    tolerance=300,
    sdk_accepts=svix_accepts,
    expect_id=MSG_ID,
    expect_type="invoice.paid",
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_published_example(pv):
    """The worked example of "Verifying webhooks manually" (docs.svix.com)."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    headers = {
        "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "svix-timestamp": "1614265330",
        "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    assert outcome(provider, headers, b'{"test": 2432232314}', now=1614265330) == "accepted:0"
    assert outcome(provider, headers, b'{"test": 2432232315}', now=1614265330) == "invalid_signature"


def test_both_signatures_of_a_rotation_in_one_header(pv):
    provider = make_provider(pv, SCHEME, (ROTATED, SECRET))
    body = event(NOW)
    old = svix_sdk(SECRET, body, NOW)
    new = svix_sdk(ROTATED, body, NOW)
    both = {**old, "svix-signature": f"{old['svix-signature']} {new['svix-signature']}"}
    assert outcome(provider, both, body) == "accepted:0"
    assert outcome(provider, old, body) == "accepted:1"
    v1a = {**old, "svix-signature": f"v1a,{'A' * 86}== {old['svix-signature']}"}  # an asymmetric entry we skip
    assert outcome(provider, v1a, body) == "accepted:1"


def test_secret_without_the_whsec_prefix_is_the_same_key(pv):
    """Svix's libraries strip an optional ``whsec_``; so does the gateway's whsec encoding."""
    provider = make_provider(pv, SCHEME, (SECRET.removeprefix("whsec_"),))
    assert outcome(provider, svix_sdk(SECRET, event(NOW), NOW), event(NOW)) == "accepted:0"


def test_webhook_header_names_are_not_read_by_the_svix_preset(pv):
    """svix-python falls back to webhook-* names; the preset reads what Svix sends (svix-*).
    Unbranded endpoints (webhook-*) use the standard-webhooks preset."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    headers = {k.replace("svix-", "webhook-"): v for k, v in svix_sdk(SECRET, event(NOW), NOW).items()}
    assert outcome(provider, headers, event(NOW)) == "missing_signature"
