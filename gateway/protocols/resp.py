"""A lean Redis client: RESP over a keep-alive connection pool, replies parsed by hiredis.

Why not redis-py's asyncio client: each store call is one ``EVALSHA``, and redis-py spends about
100 µs of CPU per command on its general machinery (command parsing, response callbacks, pool
bookkeeping, health checks), more than the whole webhook pipeline spends on a request. This client
sends one command per connection at a time and reads one reply. ``redis://`` and ``rediss://``
(TLS), ``user:password@``, and a database number in the path are supported.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.protocols.exchange import Exchange, close_idle, take_idle


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


class _Connection(Exchange[Any]):
    def __init__(self) -> None:
        super().__init__()
        parser = _hiredis()
        self.reader = parser.Reader()
        self.protocol_error: type[Exception] = parser.ProtocolError
        self.reply_error: type[Exception] = parser.ReplyError

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            reply = self.reader.gets()
        except self.protocol_error as exc:
            self.close()
            self.fail(ConnectionError(f"bad reply from Redis: {exc}"))
            return
        if reply is False:
            return  # incomplete: wait for more bytes
        if not self.pending:
            self.close()  # a reply nobody asked for: out of step, never reuse
            return
        self.answer(reply)

    async def request(self, payload: bytes) -> Any:
        assert self.transport is not None
        waiter = self.expect()
        self.transport.write(payload)
        reply = await waiter
        if isinstance(reply, self.reply_error):
            raise RespError(str(reply))
        return reply


class RespPool:
    """Connections to one Redis; ``max_connections`` at most, idle ones reused."""

    def __init__(self, url: str, *, timeout: float = 0.5, max_connections: int = 64) -> None:
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
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)

    async def call(self, *args: Any) -> Any:
        """One command, one reply. Raises ``RespError``, ``OSError`` or ``TimeoutError`` (the
        whole call, waiting for a free connection included, is bounded by ``timeout``)."""
        return await self._exchange(encode(args))

    async def call_asking(self, *args: Any) -> Any:
        """``ASKING`` then the command, on one connection: how a Redis Cluster client follows an
        ``-ASK`` redirect (the target node serves a migrating slot's key to that connection only)."""
        return await self._exchange(encode(("ASKING",)), encode(args))

    async def _exchange(self, *payloads: bytes) -> Any:
        """Each payload in turn on one connection; the last reply."""
        async with asyncio.timeout(self.timeout), self._slots:
            conn = await self._acquire()
            try:
                for payload in payloads:
                    reply = await conn.request(payload)
            except RespError:
                self._idle.append(conn)  # an error reply leaves the connection in step
                raise
            except BaseException:
                conn.close()  # a timeout or a reset: the reply may still come, never reuse
                raise
            self._idle.append(conn)
            return reply

    async def _acquire(self) -> _Connection:
        if (idle := take_idle(self._idle)) is not None:
            return idle
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl)
        try:
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                await conn.request(encode(("AUTH", *auth)))
            if self.db:
                await conn.request(encode(("SELECT", self.db)))
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        close_idle(self._idle)
