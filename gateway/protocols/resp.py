"""A lean Redis client: RESP over one pipelined connection, replies parsed by hiredis.

Why not redis-py's asyncio client: each store call is one ``EVALSHA``, and redis-py spends about
100 µs of CPU per command on its general machinery (command parsing, response callbacks, pool
bookkeeping, health checks), more than the whole webhook pipeline spends on a request.

Why one pipelined connection: Redis runs commands one at a time anyway, and the expensive part of
a round trip on the gateway's side is the system calls. Commands issued in the same turn of the
event loop (concurrent webhooks all reach their rate-limit call together) leave in one write at
its end, with the turn's other writes (``coalesce.py``),
and their replies come back in one read; each reply goes to the waiter that sent the command,
in order (RESP answers in order). A waiter that gave up still has its reply read and dropped,
so the connection stays in step. ``redis://`` and ``rediss://`` (TLS), ``user:password@``, and
a database number in the path are supported.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.protocols.coalesce import Coalescer, coalescer


class RespError(Exception):
    """An error reply from Redis (``-ERR ...``, ``-NOSCRIPT ...``)."""


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _hiredis() -> Any:
    import hiredis  # the parser: loaded when a Redis store connects, not with the package

    return hiredis


class _Pipe(asyncio.Protocol):
    """One connection: commands queued in one loop turn go out in one write, replies in order."""

    def __init__(self) -> None:
        parser = _hiredis()
        self.reader = parser.Reader()
        self.protocol_error: type[Exception] = parser.ProtocolError
        self.reply_error: type[Exception] = parser.ReplyError
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.writes: Coalescer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        # Kept: on Python 3.11 every get_running_loop() is a getpid() syscall, per command here.
        self.loop = asyncio.get_running_loop()
        self.writes = coalescer(self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("Redis closed the connection"))

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply (an error reply as a ``ReplyError``)."""
        future = (self.loop or asyncio.get_running_loop()).create_future()
        if self.closed or self.transport is None or self.writes is None:
            future.set_exception(ConnectionError("the Redis connection is closed"))
            return future
        self.writes.write(self.transport, payload)
        self.waiters.append(future)
        return future

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except self.protocol_error as exc:
                self.close(ConnectionError(f"bad reply from Redis: {exc}"))
                return
            if reply is False:
                return  # incomplete: wait for more bytes
            if not self.waiters:
                self.close(ConnectionError("a reply nobody asked for"))  # out of step: never reuse
                return
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self, exc: Exception | None = None) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._fail(exc or ConnectionError("the Redis connection was closed"))

    def _fail(self, exc: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(type(exc)(*exc.args))


class RespPool:
    """A client of one Redis: one pipelined connection, opened on first use and again after a loss.

    One connection carries any number of concurrent commands, so a burst waits for nothing but
    Redis itself (there is no pool size to exhaust)."""

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// or rediss:// URL: {parts.scheme}://")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path.isdigit() else 0
        self.timeout = timeout
        self._pipe: _Pipe | None = None
        self._connecting = asyncio.Lock()

    async def call(self, *args: Any) -> Any:
        """One command, one reply. Raises ``RespError``, ``OSError`` or ``TimeoutError`` (the
        whole call, connecting included, is bounded by ``timeout``)."""
        return await self._send(encode(args))

    async def call_asking(self, *args: Any) -> Any:
        """``ASKING`` then the command, back to back on the connection: how a Redis Cluster client
        follows an ``-ASK`` redirect (the target serves a migrating slot's key to the command
        right after ``ASKING`` on that connection only; queued in one go, nothing comes between)."""
        return await self._send(encode(("ASKING",)), encode(args))

    async def _send(self, *payloads: bytes) -> Any:
        """Each payload queued in turn on the pipe; the last one's reply (an error reply of any
        of them raises ``RespError``)."""
        pipe = self._pipe
        if pipe is None or not pipe.usable():
            async with asyncio.timeout(self.timeout):
                pipe = await self._connect()
        waiters = [pipe.send(payload) for payload in payloads]
        # One timer on the last waiter, cheaper than an asyncio.timeout() scope per command.
        timer = (pipe.loop or asyncio.get_running_loop()).call_later(self.timeout, _time_out, waiters[-1], pipe)
        try:
            replies = [await waiter for waiter in waiters]
        finally:
            timer.cancel()
        for reply in replies:
            if isinstance(reply, pipe.reply_error):
                raise RespError(str(reply))
        return replies[-1]

    async def _connect(self) -> _Pipe:
        async with self._connecting:
            if self._pipe is not None and self._pipe.usable():
                return self._pipe
            loop = asyncio.get_running_loop()
            _, pipe = await loop.create_connection(_Pipe, self.host, self.port, ssl=self.ssl)
            try:
                if self.password is not None:
                    auth = (self.username, self.password) if self.username else (self.password,)
                    _check(pipe, await pipe.send(encode(("AUTH", *auth))))
                if self.db:
                    _check(pipe, await pipe.send(encode(("SELECT", self.db))))
            except BaseException:
                pipe.close()
                raise
            self._pipe = pipe
            return pipe

    async def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


def _check(pipe: _Pipe, reply: Any) -> None:
    if isinstance(reply, pipe.reply_error):
        raise RespError(str(reply))


def _time_out(waiter: asyncio.Future[Any], pipe: _Pipe) -> None:
    """No reply within the timeout: the server may be hung, so the connection is not trusted
    again (its other waiters fail now rather than each waiting out its own timeout)."""
    if not waiter.done():
        waiter.set_exception(TimeoutError("Redis did not answer in time"))
        pipe.close(ConnectionError("Redis did not answer in time"))
