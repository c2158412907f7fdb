"""PayPal: RSA-SHA256 with PayPal's certificate over ``{id}|{timestamp}|{webhook_id}|{body}``,
where the body is its CRC32 (``crc32`` below). The certificate fetch and its pinning are
``providers/certificates.py``; the rest is the YAML template."""

from __future__ import annotations

import zlib


def crc32(body: bytes) -> tuple[bytes, ...]:
    """The body's CRC32 as an unsigned decimal number, which the signed string carries in place of
    the body (https://developer.paypal.com/api/rest/webhooks/rest/#link-eventheadervalidation)."""
    return (str(zlib.crc32(body)).encode(),)
