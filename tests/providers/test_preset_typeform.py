"""Typeform: ``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>`` keyed with the
webhook's secret; no timestamp.

No official Python SDK: the oracle is an independent implementation of "Secure your webhooks" in
Typeform's docs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

SECRET = "typeform-webhook-secret-0ld"
ROTATED = "typeform-webhook-secret-n3w"
EVENT = {
    "event_id": "01HQ7Z4V8N2X4200ABCDEFGHJK",
    "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j",
        "token": "a3a12ec67a1365927098a606107fac15",
        "submitted_at": "2024-03-01T12:00:00Z",
        "definition": {"id": "lT4Z3j", "title": "Webhooks example", "fields": []},
        "answers": [{"type": "text", "text": "Café ✓", "field": {"id": "DlXFaesWBX", "type": "short_text"}}],
    },
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def typeform_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {"Typeform-Signature": "sha256=" + base64.b64encode(mac).decode()}


SCHEME = Scheme(
    name="typeform",
    secrets=(SECRET, ROTATED),
    oracle=typeform_doc,
    event=event,
    signature_header="Typeform-Signature",
    expect_id="01HQ7Z4V8N2X4200ABCDEFGHJK",
    expect_type="form_response",
)


class TestContract(PresetContract):
    scheme = SCHEME


def test_hex_signature_is_refused(pv):
    """Base64, not hex (the usual slip when porting GitHub's check)."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    hexed = "sha256=" + hmac.new(SECRET.encode(), event(NOW), hashlib.sha256).hexdigest()
    assert outcome(provider, {"Typeform-Signature": hexed}, event(NOW)) == "invalid_signature"
