"""Stages 4 and 6: per-source (before verification) and per-provider (after) GCRA limits.

When the store fails, ``state.on_error.rate_limit`` decides: ``open`` (the default: a limiter
outage must not drop payments) lets the request through, ``closed`` answers 503 so the provider
retries later. Either way the failure is counted in ``webhook_gateway_store_errors_total``.
"""

from __future__ import annotations

import functools
import ipaddress
import math

from gateway.addresses import parse_ip
from gateway.errors import Rejection
from gateway.metrics import Metrics
from gateway.pipeline.context import RequestContext
from gateway.providers.spec import RateLimit
from gateway.stores import Store, StoreError


async def _take(store: Store, metrics: Metrics, policy: str, key: str, limit: RateLimit) -> float:
    try:
        return await store.take(key, limit.rate, limit.burst)
    except StoreError:
        metrics.child(metrics.store_errors, "rate_limit", policy).inc()
        if policy == "closed":
            raise store_unavailable("rate-limit") from None
        return 0.0


def store_unavailable(what: str) -> Rejection:
    """503 + Retry-After: the provider retries later, so nothing is lost."""
    return Rejection("store_unavailable", f"{what} store unavailable; retry later", {"Retry-After": "5"})


@functools.lru_cache(maxsize=4096)  # a provider sends from a few addresses: parsed once each
def source_key(client_ip: str) -> str:
    """The per-source bucket's key of an address (see :func:`source_of`)."""
    return f"rl:src:{{{source_of(client_ip)}}}"


def source_of(client_ip: str) -> str:
    """The rate-limit bucket of an address: IPv6 by /64. One subscriber (or attacker) is normally
    handed a whole /64, and per-address buckets would give it 2**64 budgets to rotate through."""
    addr = parse_ip(client_ip)
    if isinstance(addr, ipaddress.IPv6Address):
        return f"{ipaddress.IPv6Network((addr, 64), strict=False).network_address}/64"
    return str(addr) if addr is not None else client_ip


def rate_limited(retry_after: float, what: str) -> Rejection:
    seconds = max(1, math.ceil(retry_after))
    return Rejection("rate_limited", f"too many requests {what}; retry later", {"Retry-After": str(seconds)})


class SourceRate:
    """A cheap shield against floods of unsigned junk from one address."""

    name = "source_rate"

    def __init__(self, store: Store, limit: RateLimit | None, metrics: Metrics, policy: str = "open") -> None:
        self.store = store
        self.limit = limit
        self.metrics = metrics
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        if self.limit is None:
            return
        retry_after = await _take(self.store, self.metrics, self.policy, source_key(ctx.client_ip), self.limit)
        if retry_after:
            self.metrics.child(self.metrics.rate_limited, ctx.provider_name, "source").inc()
            raise rate_limited(retry_after, "from this address")


def provider_key(name: str) -> str:
    """The provider's bucket; it shares the claim's hash tag (``{provider}``), so one Redis
    Cluster slot holds both and ``Admit`` can touch them in one script."""
    return f"rl:prov:{{{name}}}"


class ProviderRate:
    """Protects the upstream: verified traffic per provider. (With a remote store ``Admit``
    replaces this stage and ``Dedup``: the same checks in one round trip.)"""

    name = "provider_rate"

    def __init__(self, store: Store, metrics: Metrics, policy: str = "open") -> None:
        self.store = store
        self.metrics = metrics
        self.policy = policy

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        if provider.rate_limit is None:
            return
        key = provider_key(provider.name)
        retry_after = await _take(self.store, self.metrics, self.policy, key, provider.rate_limit)
        if retry_after:
            self.metrics.child(self.metrics.rate_limited, provider.name, "provider").inc()
            raise rate_limited(retry_after, "for this provider")
