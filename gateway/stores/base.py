"""The store interface, named for the gateway's operations. Each call is atomic, one round trip.

Backends: ``memory://`` (this process only) and, later, Redis. Driver errors are wrapped in
:class:`gateway.errors.StoreError` at the store boundary; each stage applies its declared failure policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from gateway.stores.registry import Backends


class Claim(enum.Enum):
    """What ``claim`` found for an event id."""

    CLAIMED = "claimed"  # ours now: forward, then commit or release
    IN_FLIGHT = "in_flight"  # another copy holds the lease and may yet fail
    DONE = "done"  # accepted before: a duplicate


class Store(Protocol):
    """Dedup leases and rate-limit buckets."""

    url: str
    remote: bool  # a network hop away: worth fusing calls (see ``admit``)

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        """Take ``key`` for ``lease`` seconds unless it is held or done."""

    async def commit(self, key: str, token: str, ttl: float) -> None:
        """Mark ``key`` done for ``ttl`` seconds (if ``token`` still holds it or nobody does)."""

    async def release(self, key: str, token: str) -> None:
        """Drop the lease so a retry can claim ``key``; a no-op unless ``token`` holds it."""

    async def take(self, key: str, rate: float, burst: int) -> float:
        """One token from the GCRA bucket ``key``: 0.0 if allowed, else seconds until it would be."""

    async def admit(
        self, rate_key: str, rate: float, burst: int, claim_key: str, token: str, lease: float
    ) -> tuple[float, Claim | None]:
        """``take`` then, only if allowed, ``claim``, atomically and in one round trip:
        ``(retry_after, None)`` when rate-limited, else ``(0.0, claim state)``."""

    async def ping(self) -> bool:
        """Whether the backend answers (for readiness)."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What a store may be opened with besides its URL; each backend reads what applies to it."""

    key_prefix: str = "whgw:"  # Redis: every key under it
    timeout: float = 0.5  # Redis: seconds per call
    max_entries: int = 1_000_000  # memory: dedup entries kept before the oldest are trimmed


class Backend(Protocol):
    """What ``STORES`` holds: a store class that opens from a URL and options."""

    @classmethod
    def open(cls, url: str, options: StoreOptions) -> Store: ...

    @classmethod
    def check(cls, url: str, key_prefix: str) -> tuple[str, str] | None:
        """What is wrong with this URL and prefix, found without connecting: ``(key, message)``
        for the config loader to report, or ``None``."""


#: URL scheme -> store class; each backend module registers its own schemes.
STORES: Backends[type[Backend]] = Backends("store")


def gcra(tat: float, now: float, rate: float, burst: int) -> tuple[float, float]:
    """One GCRA step: returns ``(new_tat, retry_after)``; ``retry_after`` is 0.0 when allowed.

    ``tat`` is the theoretical arrival time; ``burst`` requests may arrive at once, then one
    every ``1/rate`` seconds. Shared by every backend (the Redis Lua script mirrors it).
    """
    interval = 1.0 / rate
    # Measured from ``now``, not as ``tat + interval - burst * interval`` compared with ``now``:
    # that sum rounds (``(t + 10.0) - 10.0`` is one ulp above ``t`` for some clock values), and a
    # fresh bucket with burst 1 then refused its first request now and then.
    # Never more than a full bucket ahead: a clock that stepped back (a failed-over Redis primary
    # whose clock is behind) would otherwise refuse for as long as the step. The capped time is
    # also what is kept, refused or not, so the bucket refills from there.
    backlog = min(max(tat - now, 0.0), burst * interval)
    wait = backlog - (burst - 1) * interval
    if wait > 0.0:
        return now + backlog, wait
    return now + backlog + interval, 0.0
