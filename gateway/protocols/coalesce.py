"""Socket writes held until the end of the event-loop turn, then made together.

Why: a write to a loopback peer that is asleep (the upstream waiting in ``epoll_wait``, the
client's load balancer or sidecar) wakes it up, and on a VM a cross-CPU wake-up is an
inter-processor interrupt that costs the writer more than the write itself. Written one by one,
spread over a turn in which the gateway also verifies, parses and records other webhooks, every
answer and every forwarded event wakes its peer again; written together, the peer wakes once and
finds them all. Measured against the code before it (``bench/cost.py --gateway-path``, README
"Performance"): kernel time per webhook halved, throughput up by a third.

Writes held for one transport leave joined, in order, as one write (the Redis client's pipelined
commands of a turn, pipelined answers); their timing moves by at most the rest of the turn that
produced them. A close asked for with a write happens after it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

log = logging.getLogger("gateway.server")


class Writable(Protocol):
    def write(self, data: bytes, /) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...


class Coalescer:
    """The writes of one event loop, flushed once per turn (``flush`` also flushes at once)."""

    __slots__ = ("_closing", "_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: dict[Writable, list[bytes]] = {}  # in the order the transports first wrote
        self._closing: set[Writable] = set()
        self._scheduled = False

    def write(self, transport: Writable, data: bytes, close: bool = False) -> None:
        """``transport.write(data)`` (then ``close()`` when ``close``) at the end of this turn."""
        held = self._pending.get(transport)
        if held is None:
            self._pending[transport] = [data]
        else:
            held.append(data)
        if close:
            self._closing.add(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Make every held write now, one per transport; a transport closed meanwhile gets nothing."""
        self._scheduled = False
        pending, self._pending = self._pending, {}
        closing, self._closing = self._closing, set()
        for transport, chunks in pending.items():
            if transport.is_closing():
                continue
            try:
                transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            except Exception:  # one broken transport must not cost the others their writes
                log.exception("a held write failed")
                transport.close()
                continue
            if transport in closing:
                transport.close()  # after the answer is flushed from the transport's buffer


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = weakref.WeakKeyDictionary()


def coalescer(loop: asyncio.AbstractEventLoop) -> Coalescer:
    """The one coalescer of ``loop``: the lean server's answers and the upstream client's
    requests share it, so one flush per turn serves both."""
    found = _BY_LOOP.get(loop)
    if found is None:
        found = _BY_LOOP[loop] = Coalescer(loop)
    return found
