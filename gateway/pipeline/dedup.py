"""Stage 7: deduplicate by event id, without ever losing a webhook.

The id is claimed (a short lease) before forwarding, committed (kept for the provider's retry
horizon) only after the event was accepted downstream, and released on any failure so the
provider's retry goes through. A copy that arrives while the first is in flight waits for it,
bounded, then gets 409 + Retry-After: never "duplicate" for an event that may yet fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time

from gateway.errors import Rejection
from gateway.metrics import Metrics
from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.fields import document, lookup
from gateway.providers import canonical
from gateway.settings.model import DedupSettings
from gateway.stores import Claim, Store, StoreError

MAX_ID_LENGTH = 200


class Dedup:
    name = "dedup"

    def __init__(self, store: Store, settings: DedupSettings, metrics: Metrics, policy: str = "closed") -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        if provider.body == "json":
            document(ctx)  # a provider that sends JSON must send valid JSON: 400 otherwise
        event_id = _scalar(lookup(ctx, provider.event_id))
        if not _is_unicode(event_id):
            raise Rejection("invalid_body", "the event id is not valid Unicode (a lone surrogate)")
        ctx.event_type = _scalar(lookup(ctx, provider.event_type))
        ctx.event_id = event_id or _content_id(ctx)
        if len(ctx.event_id) > MAX_ID_LENGTH:
            ctx.event_id = hashlib.sha256(ctx.event_id.encode()).hexdigest()
        ctx.dedup_key = f"dd:{{{provider.name}}}:{ctx.event_id}"
        token = f"{random.getrandbits(64):016x}"  # tells our lease from another's; not a secret
        deadline = time.monotonic() + self.settings.inflight_wait
        pause = 0.01
        while True:
            state = await self._claim(ctx.dedup_key, token)
            if state is None:
                return  # store down, policy open: forward without dedup (counted)
            if state is Claim.CLAIMED:
                ctx.cleanups.append(lambda c, ok: self._settle(c, token, ok))
                return
            if state is Claim.DONE:
                self.metrics.child(self.metrics.dedup_hits, provider.name).inc()
                body = {"success": True, "status": "duplicate", "event_id": ctx.event_id}
                ctx.reply = Reply(200, "duplicate", body)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Rejection(
                    "in_flight", "a copy of this event is being delivered; retry shortly", {"Retry-After": "1"}
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.2)

    async def _claim(self, key: str, token: str) -> Claim | None:
        try:
            return await self.store.claim(key, token, self.settings.lease)
        except StoreError:
            self.metrics.child(self.metrics.store_errors, "dedup", self.policy).inc()
            if self.policy == "open":
                return None
            # Closed (the default): without dedup we could forward a payment twice. 503 makes
            # the provider retry later, so nothing is lost.
            raise Rejection(
                "store_unavailable", "deduplication store unavailable; retry later", {"Retry-After": "5"}
            ) from None

    async def _settle(self, ctx: RequestContext, token: str, ok: bool) -> None:
        assert ctx.provider is not None
        try:
            if ok:
                await self.store.commit(ctx.dedup_key, token, ctx.provider.dedup_ttl)
            else:
                await self.store.release(ctx.dedup_key, token)
        except StoreError:
            # The event was answered already; the lease expires on its own after `lease` seconds.
            self.metrics.child(self.metrics.store_errors, "dedup", "commit" if ok else "release").inc()


def _content_id(ctx: RequestContext) -> str:
    """The id of an event that names none: a hash of what the provider signed. With a
    canonicalizer that is the canonical form, not the raw bytes: otherwise the same signed IPN
    re-sent with other whitespace or key order would verify, hash differently and go through twice."""
    sig = ctx.provider.signature if ctx.provider else None
    signed = canonical.REGISTRY[sig.canonicalizer](ctx.body)[0] if sig and sig.canonicalizer else ctx.body
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
