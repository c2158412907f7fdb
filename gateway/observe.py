"""A live feed of answered webhooks, for whoever wants to watch: ``webhook-gateway dev``, a
dashboard's live tail.

The pipeline runner publishes one :class:`Observed` per answered webhook request, but only while
someone is subscribed: with no subscriber the runner's whole cost is one truthiness check of a
list, and nothing is built. A subscriber reads from its own bounded queue, so a slow reader never
slows the request path: when its queue is full, newer records are dropped for it (and counted in
``Subscription.dropped``), never for the others.

Usage, inside the gateway's event loop::

    with services.feed.subscribe(maxsize=1000) as feed:
        async for seen in feed:
            print(seen.provider, seen.outcome, seen.status)

Each process has its own feed (``run --workers N``: each worker sees the requests it answered).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True, slots=True)
class Observed:
    """One answered webhook request. Never holds a secret; ``event`` is what the upstream got."""

    at: float  # time.time() when the answer was ready
    provider: str  # "unknown" for a URL naming no configured provider
    event_type: str  # "" when the request was rejected before the type was read
    event_id: str
    outcome: str  # forwarded | queued | duplicate | handshake | an error code (gateway/errors.py)
    status: int  # the HTTP status the provider was answered
    latency_ms: float  # time to answer, upstream included
    verified: bool | None  # signature verified; None when the provider is configured unsigned
    upstream_status: int | None = None  # the upstream's answer (sync mode, forwarded events)
    reason: str = ""  # the error message sent back, for rejections
    event: bytes = b""  # the CloudEvents envelope, for forwarded and queued events


class Subscription:
    """One reader's bounded queue; iterate it, and close it (or use ``with``) when done."""

    def __init__(self, feed: EventFeed, maxsize: int) -> None:
        self._feed = feed
        self._queue: asyncio.Queue[Observed] = asyncio.Queue(maxsize)
        self.dropped = 0  # records this reader missed because its queue was full

    def offer(self, seen: Observed) -> None:
        try:
            self._queue.put_nowait(seen)
        except asyncio.QueueFull:
            self.dropped += 1

    async def get(self) -> Observed:
        return await self._queue.get()

    def close(self) -> None:
        self._feed.unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Observed:
        return await self._queue.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class EventFeed:
    """Fan-out of :class:`Observed` records to the current subscribers (one per process)."""

    def __init__(self) -> None:
        self.subscribers: list[Subscription] = []  # the runner checks this before building a record

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """A new reader; records published from now on reach it (at most ``maxsize`` unread)."""
        sub = Subscription(self, maxsize)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def publish(self, seen: Observed) -> None:
        """Hand ``seen`` to every subscriber without waiting (full queues drop it)."""
        for sub in self.subscribers:
            sub.offer(seen)
