"""Mailgun: https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks.

The body's ``signature`` object holds ``timestamp``, ``token`` and ``signature``, the hex
HMAC-SHA256 (webhook signing key) of timestamp + token; ``parent-signature``, with the primary
account's key, for a subaccount's domain. ``event-data`` is NOT signed: the event id is
``event-data.id`` (a retry carries a new token), and dedup remembers the signed timestamp + token
beside it (``dedup_signed_content``), so a captured signature cannot be replayed with other data.
"""

from __future__ import annotations

import hmac
import json
import os

from gateway.errors import Rejection
from gateway.providers.request import SignedRequest
from gateway.providers.schemes.base import DIGESTS, BodyScheme, Signed, json_object
from gateway.providers.spec import SignatureSpec


class Mailgun(BodyScheme):
    name = "mailgun"
    describe = "signature.timestamp + signature.token (in the body)"
    uses_header = False
    carries_timestamp = True

    def parse(self, request: SignedRequest, header: str) -> tuple[tuple[Signed, ...], str | None]:
        block = json_object(request.body).get("signature")
        if not isinstance(block, dict):
            raise Rejection("missing_signature", "the body has no signature object")
        timestamp, token = block.get("timestamp"), block.get("token")
        if isinstance(timestamp, int) and not isinstance(timestamp, bool):
            timestamp = str(timestamp)
        if not isinstance(timestamp, str) or not isinstance(token, str) or not timestamp or not token:
            raise Rejection("invalid_signature", "signature.timestamp and signature.token must be strings")
        found = (block.get("signature"), block.get("parent-signature"))
        signatures = tuple(s for s in found if isinstance(s, str) and s)
        if not signatures:
            raise Rejection("missing_signature", "the body's signature object has no signature")
        payload = (timestamp + token).encode("utf-8", "surrogatepass")
        return (Signed(signatures, (payload,)),), timestamp

    def sign_body(self, spec: SignatureSpec, body: bytes, key: bytes, now: float) -> bytes:
        doc = json.loads(body)
        block = doc.setdefault("signature", {})
        block["timestamp"] = str(int(now))
        block.setdefault("token", os.urandom(25).hex())
        message = (block["timestamp"] + block["token"]).encode()
        block["signature"] = hmac.new(key, message, DIGESTS[spec.algorithm]).hexdigest()
        return json.dumps(doc, separators=(",", ":")).encode()
