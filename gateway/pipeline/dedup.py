"""Stage 7: deduplicate by event id, without ever losing a webhook.

The id is claimed (a short lease) before forwarding, committed (kept for the provider's retry
horizon) only after the event was accepted downstream, and released on any failure so the
provider's retry goes through. A copy that arrives while the first is in flight waits for it,
bounded, then gets 409 + Retry-After: never "duplicate" for an event that may yet fail.

Where the event id is not signed (GitHub's delivery header, say), the digest of the signed
content is claimed, committed and released beside it, under the same rules: a captured body and
signature sent again under a fresh id finds that digest done and is a duplicate (a replay), and
a failed delivery releases both, so the provider's retry is not mistaken for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
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
        self._releasing: set[asyncio.Task[None]] = set()

    async def __call__(self, ctx: RequestContext) -> None:
        token = f"{random.getrandbits(64):016x}"  # tells our lease from another's; not a secret
        content = content_key(ctx)
        deadline = time.monotonic() + self.settings.inflight_wait
        pause = 0.01
        state = await self._first_claim(ctx, token)
        while True:
            keys: tuple[str, ...] = (ctx.dedup_key,)
            replay = False
            if state is Claim.CLAIMED and content:
                state, keys, replay = await self._claim_content(ctx, token, content)
            if state is None:
                return  # store down, policy open: forward without dedup (counted)
            if state is Claim.CLAIMED:
                ctx.cleanups.append(functools.partial(self._settle, keys, token))
                return
            if state is Claim.DONE:
                self._duplicate(ctx, replay)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Rejection(
                    "in_flight", "a copy of this event is being delivered; retry shortly", {"Retry-After": "1"}
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.2)
            state = await self._claim(ctx.dedup_key, token)

    def _duplicate(self, ctx: RequestContext, replay: bool) -> None:
        assert ctx.provider is not None
        hits = self.metrics.content_replays if replay else self.metrics.dedup_hits
        self.metrics.child(hits, ctx.provider.name).inc()
        body = {"success": True, "status": Outcome.DUPLICATE, "event_id": ctx.event_id}
        ctx.reply = Reply(200, Outcome.DUPLICATE, body)

    async def _claim_content(
        self, ctx: RequestContext, token: str, content: str
    ) -> tuple[Claim | None, tuple[str, ...], bool]:
        """With the event id claimed, claim the signed content's digest too; ``(state, keys held,
        replay)``. Taken: the id claim goes back (a replay under a fresh id is not a new event; a
        copy in flight is waited for)."""
        try:
            state = await self._claim(content, token)
        except Rejection:  # store down, policy closed: 503, and our id claim must not linger
            await self._settle((ctx.dedup_key,), token, ctx, False)
            raise
        if state is None:  # store down, policy open: the id claim alone
            return Claim.CLAIMED, (ctx.dedup_key,), False
        if state is Claim.CLAIMED:
            return state, (ctx.dedup_key, content), False
        await self._settle((ctx.dedup_key,), token, ctx, False)
        return state, (), state is Claim.DONE

    async def _first_claim(self, ctx: RequestContext, token: str) -> Claim | None:
        """The first try; ``Admit`` fuses the provider rate limit into it."""
        return await self._claim(ctx.dedup_key, token)

    async def _claim(self, key: str, token: str) -> Claim | None:
        try:
            return await self.store.claim(key, token, self.settings.lease)
        except StoreError:
            self.release_soon(key, token)
            self.metrics.child(self.metrics.store_errors, "dedup", self.policy).inc()
            if self.policy == "open":
                return None
            # Closed (the default): without dedup we could forward a payment twice. 503 makes
            # the provider retry later, so nothing is lost.
            raise store_unavailable("deduplication") from None

    def release_soon(self, key: str, token: str) -> None:
        """A claim whose answer was lost (a timeout, a dropped connection) may have been made all
        the same: let it go in the background, or the provider's retry would wait out the lease
        (409s for ``lease`` seconds). Checked by token, so it can only drop this request's own."""
        task = asyncio.get_running_loop().create_task(self._release_quietly(key, token))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_quietly(self, key: str, token: str) -> None:
        with contextlib.suppress(StoreError):  # still down: the lease expires by itself
            await self.store.release(key, token)

    async def _settle(self, keys: tuple[str, ...], token: str, ctx: RequestContext, ok: bool) -> None:
        assert ctx.provider is not None
        for key in keys:
            try:
                if ok:
                    await self.store.commit(key, token, ctx.provider.dedup_ttl)
                else:
                    await self.store.release(key, token)
            except StoreError:
                # The event was answered already; the lease expires on its own after `lease` seconds.
                self.metrics.child(self.metrics.store_errors, "dedup", "commit" if ok else "release").inc()


def content_key(ctx: RequestContext) -> str:
    """The dedup key of the signed content, for a verified request of a provider whose event id
    is not signed (``dedup_signed_content``); else "". The digest covers every payload the
    signature was checked over, each length-prefixed: the same signed bytes, the same key."""
    provider = ctx.provider
    if provider is None or not provider.dedup_signed_content or ctx.secret_index < 0 or not ctx.signed_payloads:
        return ""
    digest = hashlib.sha256()
    for payload in ctx.signed_payloads:
        digest.update(len(payload).to_bytes(8, "big"))
        digest.update(payload)
    return f"dd:{{{provider.name}}}:signed:{digest.hexdigest()}"
