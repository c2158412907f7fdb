"""Stage 7: deduplicate by event id, without ever losing a webhook.

The id is claimed (a short lease) before forwarding, committed (kept for the provider's retry
horizon) only after the event was accepted downstream, and released on any failure so the
provider's retry goes through. A copy that arrives while the first is in flight waits for it,
bounded, then gets 409 + Retry-After: never "duplicate" for an event that may yet fail.
"""

from __future__ import annotations

import asyncio
import random
import time

from gateway.errors import Rejection
from gateway.metrics import Metrics
from gateway.outcomes import Outcome
from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.ratelimit import store_unavailable
from gateway.settings.model import DedupSettings
from gateway.stores import Claim, Store, StoreError


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
        token = f"{random.getrandbits(64):016x}"  # tells our lease from another's; not a secret
        deadline = time.monotonic() + self.settings.inflight_wait
        pause = 0.01
        state = await self._first_claim(ctx, token)
        while True:
            if state is None:
                return  # store down, policy open: forward without dedup (counted)
            if state is Claim.CLAIMED:
                ctx.cleanups.append(lambda c, ok: self._settle(c, token, ok))
                return
            if state is Claim.DONE:
                self.metrics.child(self.metrics.dedup_hits, provider.name).inc()
                body = {"success": True, "status": Outcome.DUPLICATE, "event_id": ctx.event_id}
                ctx.reply = Reply(200, Outcome.DUPLICATE, body)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Rejection(
                    "in_flight", "a copy of this event is being delivered; retry shortly", {"Retry-After": "1"}
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.2)
            state = await self._claim(ctx.dedup_key, token)

    async def _first_claim(self, ctx: RequestContext, token: str) -> Claim | None:
        """The first try; ``Admit`` fuses the provider rate limit into it."""
        return await self._claim(ctx.dedup_key, token)

    async def _claim(self, key: str, token: str) -> Claim | None:
        try:
            return await self.store.claim(key, token, self.settings.lease)
        except StoreError:
            self.metrics.child(self.metrics.store_errors, "dedup", self.policy).inc()
            if self.policy == "open":
                return None
            # Closed (the default): without dedup we could forward a payment twice. 503 makes
            # the provider retry later, so nothing is lost.
            raise store_unavailable("deduplication") from None

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
