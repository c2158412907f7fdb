"""What the live tails of one process share: a ring of the feed's last records, so a browser
that paused or lost its connection gets what it missed (``Last-Event-ID``).

The ring watches the feed while a tail is open and for ``LINGER`` seconds after the last one
closed (a pause, a reload, a dropped connection); after that the feed is left alone again and
costs the webhook route nothing. A tail that comes back later is told that webhooks answered
meanwhile are not shown, as is one whose id is from another process (a restart, another worker).
"""

from __future__ import annotations

import asyncio

from gateway.observe import EventFeed, Ring, Subscription

LINGER = 60.0  # seconds the ring keeps watching after the last tail closed
RING = 512  # records kept for reconnects (without their envelopes: a few hundred bytes each)
QUEUE = 2000  # records one tail may fall behind before newer ones are dropped for it


class TailHub:
    def __init__(self, feed: EventFeed, linger: float = LINGER, size: int = RING) -> None:
        self.feed = feed
        self.ring = Ring(feed, size)
        self.linger = linger
        self.open_tails = 0
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> Subscription:
        """A subscription for one tail; the ring watches from now on (no await in between, so a
        record is either in the ring before this call or reaches the subscription after it)."""
        self.open_tails += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.feed.attach(self.ring)
        return self.feed.subscribe(QUEUE)

    def close(self, sub: Subscription) -> None:
        sub.close()
        self.open_tails -= 1
        if self.open_tails == 0 and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger, self._detach)

    def _detach(self) -> None:
        self._timer = None
        if self.open_tails == 0:
            self.ring.close()

    def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._detach()
