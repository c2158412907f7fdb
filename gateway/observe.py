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

Each process has its own feed (``run --workers N``: each worker sees the requests it answered;
``EventFeed.partial`` is then True).

Every published record gets ``seq``, a number that grows by one per record: it starts at the
process's start time in microseconds, so numbers from an earlier process are smaller than any
of this one's. A :class:`Ring` keeps the last few records for readers that reconnect (an SSE
client's ``Last-Event-ID``): :meth:`Ring.since` gives what they missed, or says that it cannot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, replace
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
    seq: int = 0  # set by the feed: one more than the record published before it


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

    def drain(self, limit: int) -> list[Observed]:
        """Up to ``limit`` records that are already waiting, without waiting for more."""
        out: list[Observed] = []
        while len(out) < limit and not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

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
        self.base = time.time_ns() // 1000  # seq numbers of this process are above it
        self.seq = self.base  # the number of the last record published
        self.partial = False  # True when this process is one of several (``run --workers N``)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """A new reader; records published from now on reach it (at most ``maxsize`` unread)."""
        sub = Subscription(self, maxsize)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def publish(self, seen: Observed) -> None:
        """Number ``seen`` and hand it to every subscriber without waiting (full queues drop it)."""
        self.seq += 1
        seen = replace(seen, seq=self.seq)
        for sub in self.subscribers:
            sub.offer(seen)

    def attach(self, sub: Subscription) -> None:
        """Subscribe ``sub`` (again): a :class:`Ring` reattached after a while."""
        if sub not in self.subscribers:
            self.subscribers.append(sub)


class Ring(Subscription):
    """The last ``size`` records (without their envelopes), for readers that reconnect.

    While attached it costs what any subscriber costs (records are built); detached (``close``)
    it keeps what it has and remembers that records from then on were never built.
    """

    def __init__(self, feed: EventFeed, size: int = 256) -> None:
        super().__init__(feed, 1)
        self.records: deque[Observed] = deque(maxlen=size)
        self.blind_since: int | None = None  # the feed's seq when the ring last stopped watching

    def offer(self, seen: Observed) -> None:
        self.records.append(replace(seen, event=b"") if seen.event else seen)

    def close(self) -> None:
        super().close()
        self.blind_since = self._feed.seq

    def since(self, last: int) -> tuple[list[Observed], int | None]:
        """The records after ``last`` this ring holds, and how many before them are gone: 0, a
        count, or None when it cannot be known (records were not built, or ``last`` is not one
        of this process's numbers: the gateway restarted, or another worker numbered it)."""
        feed = self._feed
        after = [r for r in self.records if r.seq > last]
        if not feed.base <= last <= feed.seq:
            return after, None
        if self.blind_since is not None and self.blind_since >= last:  # unbuilt records after it
            return after, None
        first = after[0].seq if after else feed.seq + 1
        return after, first - last - 1
