"""Stages 6b + 7 fused, for a store a network hop away (Redis): admit = rate limit, then claim.

``ProviderRate`` followed by ``Dedup`` costs two round trips; the store's ``admit`` takes one
token from the provider's bucket and, only if allowed, claims the event id, atomically in one
Lua call. The order and the answers are those of the two stages: a rate-limited request claims
nothing; a copy in flight is waited for by ``Dedup``'s loop, which this stage inherits.
"""

from __future__ import annotations

from gateway.errors import StoreError
from gateway.metrics import Metrics
from gateway.pipeline.context import RequestContext
from gateway.pipeline.dedup import Dedup
from gateway.pipeline.ratelimit import provider_key, rate_limited, store_unavailable
from gateway.settings.model import DedupSettings
from gateway.stores import Claim, Store


class Admit(Dedup):
    name = "admit"

    def __init__(
        self, store: Store, settings: DedupSettings, metrics: Metrics, policy: str = "closed", rate_policy: str = "open"
    ) -> None:
        super().__init__(store, settings, metrics, policy)
        self.rate_policy = rate_policy

    async def _first_claim(self, ctx: RequestContext, token: str) -> Claim | None:
        provider = ctx.provider
        assert provider is not None
        limit = provider.rate_limit
        if limit is None:
            return await self._claim(ctx.dedup_key, token)
        try:
            retry_after, state = await self.store.admit(
                provider_key(provider.name), limit.rate, limit.burst, ctx.dedup_key, token, self.settings.lease
            )
        except StoreError:
            self.metrics.child(self.metrics.store_errors, "rate_limit", self.rate_policy).inc()
            if self.rate_policy == "closed":
                self.release_soon(ctx.dedup_key, token)  # the script may have claimed it
                raise store_unavailable("rate-limit") from None
            return await self._claim(ctx.dedup_key, token)  # the claim's own policy applies
        if retry_after:
            self.metrics.child(self.metrics.rate_limited, provider.name, "provider").inc()
            raise rate_limited(retry_after, "for this provider")
        return state
