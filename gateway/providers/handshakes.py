"""Named handshake responders: replies YAML cannot express, selected by ``handshake.responder``.

A responder gets the parsed body and the secret that verified the request, and returns the JSON
reply. It runs only for a verified request (``gateway.pipeline.handshake``): Zoom's answer is an
HMAC of a value the request chose, so answering an unverified one would hand out signatures.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from gateway.errors import Rejection

Responder = Callable[[Any, bytes], dict[str, Any]]


def zoom_url_validation(doc: Any, secret: bytes) -> dict[str, Any]:
    """https://developers.zoom.us/docs/api/webhooks/#validate-your-webhook-endpoint:
    ``{"plainToken": p, "encryptedToken": hex HMAC-SHA256(secret token, p)}``."""
    payload = doc.get("payload") if isinstance(doc, dict) else None
    token = payload.get("plainToken") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise Rejection("invalid_body", "endpoint.url_validation without payload.plainToken")
    encrypted = hmac.new(secret, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return {"plainToken": token, "encryptedToken": encrypted}


RESPONDERS: dict[str, Responder] = {"zoom_url_validation": zoom_url_validation}
