"""``memory://``: dedup and rate limits in this process. Real, bounded, and lost on restart."""

from __future__ import annotations

import time

from gateway.stores.base import Claim, gcra

_IN_FLIGHT = 0
_DONE = 1


class MemoryStore:
    """A single-process store. Everything happens on the event loop, so each call is atomic."""

    remote = False

    def __init__(self, url: str = "memory://", max_entries: int = 1_000_000) -> None:
        self.url = url
        self.max_entries = max_entries
        self._ids: dict[str, tuple[int, float, str]] = {}  # key -> (state, expires, token)
        self._buckets: dict[str, float] = {}  # key -> theoretical arrival time
        self.evictions = 0

    async def claim(self, key: str, token: str, lease: float) -> Claim:
        now = time.monotonic()
        entry = self._ids.get(key)
        if entry is not None and entry[1] > now:
            return Claim.DONE if entry[0] == _DONE else Claim.IN_FLIGHT
        if entry is None and len(self._ids) >= self.max_entries:
            self._make_room(now)
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
                self._buckets = {k: v for k, v in self._buckets.items() if v > now}
            self._buckets[key] = tat
        return retry_after

    def _make_room(self, now: float) -> None:
        """Drop expired ids; if still full, the oldest (insertion order) go, counted."""
        self._ids = {k: v for k, v in self._ids.items() if v[1] > now}
        while len(self._ids) >= self.max_entries:
            del self._ids[next(iter(self._ids))]
            self.evictions += 1

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
