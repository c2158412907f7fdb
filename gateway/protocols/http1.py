"""A lean HTTP/1.1 client for the one upstream: keep-alive pool, one request per connection at a time.

Why not aiohttp's client: forwarding is the hot path, and a general client (cookies, redirects,
tracing hooks, multipart, proxies, per-request objects) costs more than the rest of the pipeline
together. The upstream is a single known origin that speaks HTTP/1.1, so this client does only
that: write one POST, read one response (Content-Length, chunked, or until close), reuse the
connection unless the response says otherwise. TLS comes from the standard ``ssl`` module.
Timeouts are enforced by the caller (the whole request) and by ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import urlsplit

from gateway.errors import ProtocolError
from gateway.protocols.coalesce import Coalescer, coalescer
from gateway.protocols.exchange import Exchange, close_idle, take_idle

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
_WS = " \t\n\r\x0b\x0c"  # what ``bytes.strip()`` strips: not Unicode's spaces (\xa0 is a byte here)


class ConnectTimeout(ConnectionError):
    """No connection within ``connect_timeout``: the request was never sent."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body


class _Connection(Exchange[Response]):
    """One connection; parses a response incrementally as bytes arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = bytearray()
        self.reusable = True
        self._head: tuple[int, dict[str, str]] | None = None
        self._need: int | None = None  # body bytes expected (Content-Length)
        self._chunked = False
        self._until_close = False
        self.writes: Coalescer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.loop is not None
        self.writes = coalescer(self.loop)

    def lost(self) -> None:
        if self._head is None:
            self.fail(ConnectionResetError("the upstream closed the connection"))
            return
        # The status line arrived, so the upstream answered: a body cut short (or one delimited
        # by the close) changes nothing, and sending again would duplicate.
        status, headers = self._head
        self.reusable = False
        self.answer(Response(status, headers, bytes(self.buf)))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.pending:
            self.close()  # unsolicited bytes: the connection is out of step, never reuse it
            return
        try:
            self._parse()
        except ProtocolError as exc:
            self.reusable = False
            self.fail(exc)

    def _parse(self) -> None:
        if self._head is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEADER_BYTES:
                    raise ProtocolError("response headers too large")
                return
            status, headers = _parse_head(bytes(self.buf[:end]))
            del self.buf[: end + 4]
            if 100 <= status < 200:  # an interim response (100 Continue): wait for the real one
                self._parse()
                return
            self._head = (status, headers)
            if headers.get("connection", "").lower() == "close":
                self.reusable = False
            te = headers.get("transfer-encoding", "").lower()
            if status in (204, 304):
                self._need = 0
            elif te:
                if te != "chunked":
                    raise ProtocolError(f"unsupported transfer-encoding {te!r}")
                self._chunked = True
            elif "content-length" in headers:
                value = headers["content-length"]
                if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                    raise ProtocolError("bad content-length")
                self._need = int(value)
            else:
                self._until_close = True
                self.reusable = False
        status, headers = self._head
        if self._need is not None and len(self.buf) >= self._need:
            body = bytes(self.buf[: self._need])
            if len(self.buf) > self._need:
                self.reusable = False
            self.answer(Response(status, headers, body))
        elif self._chunked:
            chunked = _dechunk(self.buf)
            if chunked is not None:
                if chunked[1] < len(self.buf):
                    self.reusable = False  # bytes past the reply: the connection is out of step
                self.answer(Response(status, headers, chunked[0]))
        elif self._until_close and len(self.buf) > MAX_BODY_BYTES:
            raise ProtocolError("response body too large")

    def reset(self) -> asyncio.Future[Response]:
        self.buf.clear()
        self._head, self._need, self._chunked, self._until_close = None, None, False, False
        return self.expect()


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer before the deadline"))


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")  # one decode: every byte maps to one character
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProtocolError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip(_WS):
            raise ProtocolError("malformed response header")
        key = name.lower()
        if key in headers and key in ("content-length", "transfer-encoding"):
            raise ProtocolError(f"repeated {key}")
        headers[key] = value.strip(_WS)
    return int(parts[1]), headers


def _dechunk(buf: bytearray) -> tuple[bytes, int] | None:
    """``(body, bytes consumed)`` once every chunk and the terminator have arrived, else None."""
    out = bytearray()
    pos = 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)  # trailers (usually none) end with an empty line
            if end < 0:
                return None
            return bytes(out), end + 4
        start = eol + 2
        if len(buf) < start + size + 2:
            return None
        if buf[start + size : start + size + 2] != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF")
        out += buf[start : start + size]
        pos = start + size + 2
        if len(out) > MAX_BODY_BYTES:
            raise ProtocolError("response body too large")


class Http1Pool:
    """Keep-alive connections to one origin; ``limit`` at most, idle ones reused LIFO."""

    def __init__(
        self, url: str, *, limit: int = 256, connect_timeout: float = 2.0, headers: dict[str, str] | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1] if not default_port else self.host
        self.connect_timeout = connect_timeout
        # The request line and the headers every request carries, encoded once.
        fixed = [f"POST {self.path} HTTP/1.1", f"Host: {self.host_header}"]
        fixed += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._prefix = ("\r\n".join(fixed) + "\r\n").encode("latin-1")
        self._idle: deque[_Connection] = deque()
        self._limit = limit
        self._busy = 0  # requests holding a slot (at most ``limit``): a counter, not a Semaphore,
        self._waiting: deque[asyncio.Future[None]] = deque()  # whose Python code costs more per request

    async def post(self, body: bytes, headers: dict[str, str] | None = None, deadline: float | None = None) -> Response:
        """POST ``body`` with the pool's headers plus ``headers``. Raises ``OSError`` or
        ``ConnectionError`` when no answer came back, ``TimeoutError`` past ``deadline`` (the
        event loop's clock), waiting for a free connection included."""
        extra = "".join([f"{k}: {v}\r\n" for k, v in headers.items()]) if headers else ""
        payload = b"".join((self._prefix, f"Content-Length: {len(body)}\r\n{extra}\r\n".encode("latin-1"), body))
        if deadline is not None and (self._busy >= self._limit or not self._idle):
            async with asyncio.timeout_at(deadline):  # waiting for a slot or connecting: rare
                return await self._exchange(payload, None)
        return await self._exchange(payload, deadline)

    async def _exchange(self, payload: bytes, deadline: float | None) -> Response:
        if self._busy >= self._limit:
            await self._slot()
        self._busy += 1
        try:
            conn = await self._acquire()
            waiter = conn.reset()
            assert conn.transport is not None and conn.writes is not None
            # Sent at the end of this loop turn, with the turn's other requests and answers
            # (``coalesce.py``): the upstream wakes once for them all.
            conn.writes.write(conn.transport, payload)
            # One timer on the waiter: an asyncio.timeout() scope per request costs twice as much.
            timer = None if deadline is None else waiter.get_loop().call_at(deadline, _expire, waiter)
            try:
                response = await waiter
            except BaseException:
                conn.reusable = False
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                self._release(conn)
            return response
        finally:
            self._busy -= 1
            self._wake()

    async def _slot(self) -> None:
        """Wait until fewer than ``limit`` requests hold a slot (first come, first served)."""
        while self._busy >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: pass the free slot on
                raise
            finally:
                if not waiter.done():
                    self._waiting.remove(waiter)

    def _wake(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _acquire(self) -> _Connection:
        if (idle := take_idle(self._idle)) is not None:
            return idle
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl)
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.host}:{self.port} within {self.connect_timeout:g}s") from None
        return conn

    def _release(self, conn: _Connection) -> None:
        done = conn.waiter is not None and conn.waiter.done() and not conn.waiter.cancelled()
        if done and conn.reusable and not conn.closed:
            conn.waiter = None
            self._idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        close_idle(self._idle)
