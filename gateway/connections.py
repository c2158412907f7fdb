"""Connection limits aiohttp lacks: a deadline for the request head, and a cap on open connections.

aiohttp bounds how long an idle keep-alive connection lives, but not how long a client may take
to send a request's head: a client sending one header line every few seconds holds a connection
(and a file descriptor) for as long as it likes, and a few hundred of them exhaust the process.

:class:`GuardedHandler` adds at most one timer per connection, and nothing per request on the
hot path (a head that arrives whole in one read, as webhooks do, arms no timer):

* the clock starts when the connection opens (the first head is due within ``header_timeout``),
  or, on a kept-alive connection, at the first bytes of a head that did not complete in the read
  that brought them (idling between requests is bounded by the keep-alive timeout instead);
* it stops when the parser has a whole message head (``data_received`` sees the request count
  move), so the body is bounded by the pipeline's own ``limits.body_timeout``;
* the timer is lazy (never cancelled, re-armed only for a head still pending): on expiry with
  the head still incomplete, ``408 header_timeout`` as JSON, and the connection is closed.

A connection beyond ``max_connections`` (per process) is answered ``503 too_many_connections``
with Retry-After and closed at once, before any request is read.

A request aiohttp's HTTP parser refuses (a control byte in a header, an over-long line, a
malformed request line) is answered ``400 invalid_request`` as JSON and the connection closed:
aiohttp's own answer is text/plain and quotes the offending line, which may hold a credential.
All three are counted in ``webhook_gateway_connections_dropped_total{reason}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway import jsonutil
from gateway.errors import ERROR_STATUS, Rejection
from gateway.responses import error_response

#: aiohttp's own default for ``web.run_app``; the bare RequestHandler default is an hour, which
#: would let idle connections fill the connection cap.
KEEPALIVE_TIMEOUT = 75.0
LINGER = 2.0  # seconds aiohttp reads an unfinished body after its answer, before it closes
_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}
#: The whole message of a parser refusal: the parser's own reason quotes the refused bytes.
BAD_REQUEST_MESSAGE = "the request line or headers are malformed or too long"


@dataclass(slots=True)
class ConnectionLimits:
    """Per-process connection bounds; ``on_drop(reason)`` counts a connection closed by them."""

    header_timeout: float = 10.0
    max_connections: int = 0  # 0: no cap
    on_drop: Callable[[str], None] = lambda reason: None
    open: int = 0


def raw_answer(code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 error response, written raw: there is no request object to answer."""
    status = ERROR_STATUS[code]
    body = jsonutil.dumps({"success": False, "error": {"code": code, "message": message}})
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


def refuse(transport: asyncio.Transport | None, limits: ConnectionLimits, reason: str, code: str, message: str) -> None:
    """Answer a connection the limits close (``header_timeout``, ``too_many_connections``) and
    count it; the caller closes the transport, which flushes the answer first."""
    if transport is not None:
        headers = {"Retry-After": "1"} if code == "too_many_connections" else None
        transport.write(raw_answer(code, message, headers))
    limits.on_drop(reason)


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, with the head deadline and the connection cap."""

    __slots__ = ("_head_since", "_head_timer", "_limits")

    def __init__(self, manager: web.Server, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0  # loop time the pending head began; 0.0: no head pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limits = self._limits
        limits.open += 1
        if limits.max_connections and limits.open > limits.max_connections:
            self._drop("connection_limit", "too_many_connections", "the gateway has too many open connections")
            return
        self._head_since = self._loop.time()  # the first head is due from the connection's start
        self._arm(self._head_since)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._limits.open -= 1
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # the parser has a whole head (or answered a bad one)
            self._head_since = 0.0
        elif not self._head_since and not self._request_in_progress and not self._messages:
            # No request pending or running: these are the first bytes of the next head, and
            # it did not complete in this chunk. (A whole head in one chunk, the usual case,
            # costs no timer at all.)
            self._head_since = self._loop.time()
            if self._head_timer is None:
                self._arm(self._head_since)

    def _arm(self, since: float) -> None:
        self._head_timer = self._loop.call_at(since + self._limits.header_timeout, self._check_head)

    def _check_head(self) -> None:
        """Lazy: the timer is not cancelled when a head completes; it finds no head pending, or
        a later one (re-armed for that one's deadline), or this one late (408)."""
        self._head_timer = None
        since = self._head_since
        if not since or self._force_close:
            return
        if self._loop.time() - since < self._limits.header_timeout:
            self._arm(since)
            return
        message = f"the request head did not arrive within {self._limits.header_timeout:g}s"
        self._drop("header_timeout", "header_timeout", message)

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """A request the HTTP parser refused (aiohttp answers it here, with status 400): ``400
        invalid_request`` as JSON, whose message names no header. Any other error: aiohttp's."""
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # aiohttp's own log line (rewritten without header values by logs.ParserErrors); its
        # text/plain answer, which would quote the refused line, is dropped.
        super().handle_error(request, status, exc, "")
        self._limits.on_drop("bad_request")
        # aiohttp answers a refusal as HTTP/1.0, where closing is implied: say it anyway.
        response = error_response(Rejection("invalid_request", BAD_REQUEST_MESSAGE, {"Connection": "close"}))
        response.force_close()
        return response

    def _drop(self, reason: str, code: str, message: str) -> None:
        refuse(self.transport, self._limits, reason, code, message)
        self.force_close()  # the transport flushes the answer, then closes


class GuardedServer(web.Server):
    """``web.Server`` whose connections are :class:`GuardedHandler`\\ s sharing one limits object."""

    limits: ConnectionLimits

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, self.limits, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` serving with :class:`GuardedServer`, raw (undecoded) bodies, and a sane
    keep-alive timeout. aiohttp builds its ``Server`` itself (``Application._make_handler``);
    only the protocol factory differs, so the built server is given that class."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        # auto_decompress=False: signatures are over the bytes the provider sent, and inflating
        # an untrusted body costs memory before anything is verified (see pipeline/body.py).
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT)
        # After an answer to a request whose body has not all arrived (refused early, stalled,
        # malformed chunks), aiohttp reads on for this long before it closes, so the client sees
        # the answer rather than a reset: 2 s, not its default 10 s of a held connection.
        kwargs.setdefault("lingering_time", LINGER)
        super().__init__(app, auto_decompress=False, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer
        assert isinstance(server, GuardedServer)
        server.limits = self.limits
        return server
