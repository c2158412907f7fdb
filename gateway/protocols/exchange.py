"""The shape both of our lean clients share: one request at a time on a keep-alive connection.

``Exchange`` holds the transport and the future the current reply goes to; subclasses parse bytes
as they arrive and call :meth:`answer` or :meth:`fail`. Used by the upstream HTTP/1.1 pool
(``gateway.protocols.http1``) and the Redis client (``gateway.protocols.resp``), whose pools
share :func:`take_idle` and :func:`close_idle` too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Exchange(asyncio.Protocol, Generic[T]):
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[T] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Kept: on Python 3.11 every get_running_loop() is a getpid() syscall, once per request here.
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.pending:
            self.lost()

    def lost(self) -> None:
        """The peer closed while a reply was awaited (a subclass may still make one of it)."""
        self.fail(ConnectionResetError("the peer closed the connection"))

    @property
    def pending(self) -> bool:
        return self.waiter is not None and not self.waiter.done()

    def expect(self) -> asyncio.Future[T]:
        """A fresh future for the next reply."""
        loop = self.loop or asyncio.get_running_loop()
        self.waiter = loop.create_future()
        return self.waiter

    def answer(self, value: T) -> None:
        if self.pending:
            assert self.waiter is not None
            self.waiter.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if self.pending:
            assert self.waiter is not None
            self.waiter.set_exception(exc)

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


E = TypeVar("E", bound=Exchange[Any])


def take_idle(idle: deque[E]) -> E | None:
    """The most recently released idle connection still usable, or None; stale ones (closed by
    the peer while idle) are closed on the way. The pools' shared first step of an acquire."""
    while idle:
        conn = idle.pop()
        if conn.usable():
            return conn
        conn.close()
    return None


def close_idle(idle: deque[E]) -> None:
    """Close every idle connection of a pool."""
    while idle:
        idle.pop().close()
