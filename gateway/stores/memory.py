"""``memory://``: dedup and rate limits in this process. Real, bounded, and lost on restart."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from gateway.stores.base import STORES, Claim, StoreOptions, gcra

_IN_FLIGHT = 0
_DONE = 1


@STORES.register("memory")
class MemoryStore:
    """A single-process store. Everything happens on the event loop, so each call is atomic."""

    remote = False

    def __init__(self, url: str = "memory://", max_entries: int = 1_000_000) -> None:
        self.url = url
        self.max_entries = max_entries
        self._ids: dict[str, tuple[int, float, str]] = {}  # key -> (state, expires, token)
        self._buckets: dict[str, float] = {}  # key -> theoretical arrival time
        self.evictions = 0

    @classmethod
    def open(cls, url: str, options: StoreOptions) -> MemoryStore:
        return cls(url, options.max_entries)

    @classmethod
    def check(cls, url: str, key_prefix: str) -> tuple[str, str] | None:
        return None

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        now = time.monotonic()
        entry = self._ids.get(key)
        if entry is not None and entry[1] > now:
            if entry[0] == _DONE:
                return Claim.DONE
            if entry[2] != token:  # our own token: a retried call, the claim is still ours
                return Claim.IN_FLIGHT
        if entry is None and len(self._ids) >= self.max_entries:
            self._ids = self._trimmed(self._ids, lambda v: v[1] > now)
        self._ids[key] = (_IN_FLIGHT, now + lease, token)
        return Claim.CLAIMED

    async def commit(self, key: str, token: str, ttl: float) -> None:
        entry = self._ids.get(key)
        if entry is None or entry[2] == token or entry[1] <= time.monotonic():
            self._ids.pop(key, None)  # re-insert: insertion order stays oldest-first
            self._ids[key] = (_DONE, time.monotonic() + ttl, token)

    async def release(self, key: str, token: str) -> None:
        entry = self._ids.get(key)
        if entry is not None and entry[0] == _IN_FLIGHT and entry[2] == token:
            del self._ids[key]

    async def take(self, key: str, rate: float, burst: int) -> float:
        now = time.monotonic()
        tat, retry_after = gcra(self._buckets.get(key, now), now, rate, burst)
        if not retry_after:
            if len(self._buckets) >= self.max_entries and key not in self._buckets:
                self._buckets = self._trimmed(self._buckets, lambda v: v > now)
            self._buckets[key] = tat
        return retry_after

    def _trimmed(self, table: dict[str, Any], live: Callable[[Any], bool]) -> dict[str, Any]:
        """A full table, trimmed to 90% in one pass: expired entries go first, then the oldest
        (insertion order), counted in ``evictions``. Trimming below the limit, not to it, makes
        the O(n) pass happen once per 10% of ``max_entries`` new keys, not once per key."""
        kept = {k: v for k, v in table.items() if live(v)}
        excess = len(kept) - int(self.max_entries * 0.9)
        if excess > 0:
            self.evictions += excess
            kept = dict(itertools.islice(kept.items(), excess, None))
        return kept

    async def admit(
        self, rate_key: str, rate: float, burst: int, claim_key: str, token: str, lease: float
    ) -> tuple[float, Claim | None]:
        retry_after = await self.take(rate_key, rate, burst)
        if retry_after:
            return retry_after, None
        return 0.0, await self.claim(claim_key, token, lease)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._ids.clear()
        self._buckets.clear()
