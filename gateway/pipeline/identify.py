"""Stage 6a: what the event is: its id (the dedup key), its type, and a body the provider's kind
requires (a JSON provider must send valid JSON: 400 otherwise).

The id comes from the provider's header or JSON path; an event that names none is identified by
a hash of what the provider signed. Runs after verification: nothing is parsed for a forgery.
"""

from __future__ import annotations

import contextlib
import hashlib

from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext
from gateway.pipeline.fields import document, lookup
from gateway.providers.schemes import CANONICALIZERS

MAX_ID_LENGTH = 200


class Identify:
    name = "identify"

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        if provider.body == "json":
            document(ctx)
        event_id = _scalar(lookup(ctx, provider.event_id))
        event_type = _scalar(lookup(ctx, provider.event_type))
        if not (_is_unicode(event_id) and _is_unicode(event_type)):  # a header's undecodable bytes
            raise Rejection("invalid_body", "the event id or type is not valid Unicode")
        ctx.event_type = event_type
        ctx.event_id = event_id or _content_id(ctx)
        if len(ctx.event_id) > MAX_ID_LENGTH:
            ctx.event_id = hashlib.sha256(ctx.event_id.encode()).hexdigest()
        # SECURITY: a request that failed verification (possible only in shadow mode) gets a key
        # of its own, so a forgery forwarded "unverified" can never burn the genuine event's id.
        unverified = provider.signature is not None and ctx.secret_index < 0
        ctx.dedup_key = f"dd:{{{provider.name}}}:{'unverified:' if unverified else ''}{ctx.event_id}"


def _content_id(ctx: RequestContext) -> str:
    """The id of an event that names none: a hash of what the provider signed. With a
    canonicalizer that is the canonical form, not the raw bytes: otherwise the same signed IPN
    re-sent with other whitespace or key order would verify, hash differently and go through twice."""
    if ctx.signed_body:  # computed by verify: no second canonicalization
        return hashlib.sha256(ctx.signed_body).hexdigest()
    sig = ctx.provider.signature if ctx.provider else None
    signed = ctx.body
    if sig and sig.canonicalizer:
        # Only an unverified (shadow-mode) body can fail to canonicalize here: hash its bytes.
        with contextlib.suppress(ValueError):
            signed = CANONICALIZERS[sig.canonicalizer](ctx.body)[0]
    return hashlib.sha256(signed).hexdigest()


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scalar(value: object) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
