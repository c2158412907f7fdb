"""The connection protocol of the lean path: read, answer in order, or hand over to aiohttp.

A connection starts here. Each request whose whole head is in hand and that ``parse_head``
takes runs through the pipeline as a ``LeanRequest``; its body may still be arriving (the body
stage's size and time limits apply as on aiohttp's path). Answers leave in request order, one
request at a time, like aiohttp's: bytes of pipelined requests wait in a buffer, and reading
pauses while that buffer holds more than ``PAUSE_AT`` (whether a request is being answered or the
client is not reading its answers), and resumes once it is read down. The first request the lean path does not
take (any other route, an unusual or malformed head, a head split across reads) moves the
connection, with every byte not yet consumed, to aiohttp's own protocol for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive

from gateway.connections import refuse
from gateway.lean.request import MAX_HEAD, Body, LeanRequest, parse_head
from gateway.protocols.coalesce import Coalescer, coalescer

if TYPE_CHECKING:
    from gateway.lean.runner import LeanServer

REASONS = {s.value: s.phrase for s in HTTPStatus}
PAUSE_AT = 256 * 1024  # bytes of pipelined requests held before reading pauses
NO_LENGTH = (204, 304)
_date: tuple[int, str] = (0, "")


class LeanProtocol(asyncio.Protocol):
    """One client connection, until it closes or is handed to aiohttp."""

    __slots__ = (
        "_body", "_buf", "_counted", "_loop", "_paused", "_served", "_server", "_task", "_transport",
        "_write_ok", "_writes", "idle_since", "remote",
    )  # fmt: skip

    def __init__(self, server: LeanServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._body: Body | None = None  # the body of the request being answered, while it arrives
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._write_ok = True
        self.remote: str | None = None
        self.idle_since = time.monotonic()
        self._counted = False  # in the server's open-connection count (until closed or handed on)
        self._served = False  # a request was taken: idling is bounded by the keep-alive timeout

    @property
    def busy(self) -> bool:
        return self._task is not None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task answering the current request, if any."""
        return self._task

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        # Looked up once per connection: on Python 3.11 each get_running_loop() is a getpid() syscall.
        self._loop = asyncio.get_running_loop()
        self._writes: Coalescer = coalescer(self._loop)  # answers leave at the end of the loop turn
        tcp_keepalive(self._transport)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, (list, tuple)) else None
        limits = self._server.limits
        limits.open += 1
        self._counted = True
        if limits.max_connections and limits.open > limits.max_connections:
            self._refuse("connection_limit", "too_many_connections", "the gateway has too many open connections")
            return
        self._server.lean_connections.add(self)
        # The first head is due within the head deadline, as on aiohttp's path (a head split
        # across reads is handed on, and aiohttp's guarded protocol times it from then).
        self._loop.call_later(limits.header_timeout, self._first_head_due)

    def _first_head_due(self) -> None:
        if self._served or self._transport is None or self._task is not None or self._buf:
            return
        message = f"the request head did not arrive within {self._server.limits.header_timeout:g}s"
        self._refuse("header_timeout", "header_timeout", message)

    def _refuse(self, reason: str, code: str, message: str) -> None:
        refuse(self._transport, self._server.limits, reason, code, message)
        if self._transport is not None:
            self._transport.close()  # after the answer is flushed

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._server.limits.open -= 1

    def connection_lost(self, exc: BaseException | None) -> None:
        self._uncount()
        self._server.lean_connections.discard(self)
        self._transport = None
        if self._body is not None:
            self._body.feed_eof()  # the body stage answers truncated_body, as on aiohttp's path

    def data_received(self, data: bytes) -> None:
        if self._body is not None and not self._body.complete:
            data = self._body.feed(data)
        self._buf += data
        if self._task is None:
            self._next()
        # Whatever holds the next request back (one being answered, or a client that does not
        # read its answers, so writing is paused): past PAUSE_AT, reading waits too.
        if len(self._buf) > PAUSE_AT and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        if self._body is not None:
            self._body.feed_eof()
        self._writes.flush()  # the transport closes itself next: an answer still held goes first
        return False  # close once the answer in flight (if any) is written

    def pause_writing(self) -> None:
        self._write_ok = False

    def resume_writing(self) -> None:
        self._write_ok = True
        if self._task is None and self._transport is not None:
            self._next()

    def close_idle(self) -> None:
        """Close the connection unless a request is being answered (shutdown, keep-alive timeout)."""
        if self._task is None and self._transport is not None:
            self._writes.flush()  # an answer still held for this turn goes out first
            self._transport.close()

    def abort(self) -> asyncio.Task[None] | None:
        """Cancel the request being answered (shutdown past its timeout) and close; returns its task."""
        task = self._task
        if task is not None:
            task.cancel()
        if self._transport is not None:
            self._writes.flush()
            self._transport.close()
        return task

    def _next(self) -> None:
        """Start the next buffered request, hand the connection to aiohttp, or wait for bytes."""
        transport, buf = self._transport, self._buf
        if transport is None or not buf or not self._write_ok:
            return
        if self._server.closing:
            self._writes.flush()
            transport.close()
            return
        end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
        head = parse_head(buf, end) if end >= 0 else None
        provider = self._server.providers().get(head.provider) if head is not None else None
        if head is None or provider is None or head.length > provider.max_body_bytes:
            self._handoff(transport)
            return
        start = end + 4
        body = Body(buf[start : start + head.length], head.length)
        self._buf = buf[start + head.length :]
        self._body = body
        if self._paused and len(self._buf) <= PAUSE_AT:  # the backlog is read down: read on
            self._paused = False
            transport.resume_reading()
        request = LeanRequest(head, body, self.remote)
        self._served = True
        self._task = self._loop.create_task(self._answer(request))

    async def _answer(self, request: LeanRequest) -> None:
        pipeline = self._server.pipeline
        try:
            answer = await pipeline.answer(request)
        finally:
            self._task = None
        body = self._body
        self._body = None
        transport = self._transport
        # An unread body cannot be skipped safely, and a closing server keeps no idle connections:
        # those close once their answer is written.
        close = body is None or not body.complete or self._server.closing
        if transport is not None:
            json = answer.json()
            data = serialize(answer.response()) if json is None else serialize_json(*json)
            self._writes.write(transport, data, close)  # with the rest of this turn's writes
        pipeline.finish(answer)  # metrics, stats, audit and the log line: the answer is on its way
        if transport is None or close:
            return
        self.idle_since = time.monotonic()
        if self._buf:
            self._next()

    def _handoff(self, transport: asyncio.Transport) -> None:
        """Give this connection, with the bytes not yet consumed, to aiohttp's protocol."""
        self._server.lean_connections.discard(self)
        self._uncount()  # the guarded aiohttp protocol counts it from here
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._writes.flush()  # a lean answer still held goes out before aiohttp's
        handler = self._server.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        data, self._buf, self._transport = self._buf, b"", None
        handler.data_received(data)


def serialize(response: web.Response) -> bytes:
    """The bytes aiohttp writes for ``response`` to an HTTP/1.1 keep-alive request: the status
    line, the response's own headers in order, then Content-Length, Date and Server."""
    status = response.status
    body = response.body
    data = body if isinstance(body, bytes) else b""
    lines = [f"HTTP/1.1 {status} {response.reason}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    if status not in NO_LENGTH:
        lines.append(f"Content-Length: {len(data)}")
    lines.append(f"Date: {_http_date()}\r\nServer: {SERVER_SOFTWARE}\r\n\r\n")
    return "\r\n".join(lines).encode("latin-1") + data


def serialize_json(status: int, body: bytes, headers: Mapping[str, str] | None) -> bytes:
    """``serialize(json_response(status, ...))`` without building the ``web.Response``."""
    own = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n{own}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nDate: {_http_date()}\r\nServer: {SERVER_SOFTWARE}\r\n\r\n"
    ).encode("latin-1") + body


def _http_date() -> str:
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))
    return _date[1]
