"""Connection limits aiohttp lacks: a deadline for the request head, and a cap on open connections.

aiohttp bounds how long an idle keep-alive connection lives, but not how long a client may take
to send a request's head: a client sending one header line every few seconds holds a connection
(and a file descriptor) for as long as it likes, and a few hundred of them exhaust the process.

:class:`GuardedHandler` adds one timer per connection, with no work per request on the hot path:

* armed when the connection opens (the first head must arrive within ``header_timeout``), and
  again on the first byte after a response (a keep-alive connection may idle, then must send its
  next head in time; idling itself is bounded by aiohttp's keep-alive timeout);
* cancelled as soon as the parser has a whole message head (``data_received`` sees the request
  count move), so the body is bounded by the pipeline's own ``limits.body_timeout`` instead;
* on expiry: ``408 header_timeout`` as JSON, and the connection is closed.

A connection beyond ``max_connections`` (per process) is answered ``503 too_many_connections``
with Retry-After and closed at once, before any request is read. Both are counted in
``webhook_gateway_connections_dropped_total{reason}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway import jsonutil
from gateway.errors import ERROR_STATUS

#: aiohttp's own default for ``web.run_app``; the bare RequestHandler default is an hour, which
#: would let idle connections fill the connection cap.
KEEPALIVE_TIMEOUT = 75.0
_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


@dataclass(slots=True)
class ConnectionLimits:
    """Per-process connection bounds; ``on_drop(reason)`` counts a connection closed by them."""

    header_timeout: float = 10.0
    max_connections: int = 0  # 0: no cap
    on_drop: Callable[[str], None] = lambda reason: None
    open: int = 0


def _answer(code: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 error response, written raw: there is no request object to answer."""
    status = ERROR_STATUS[code]
    body = jsonutil.dumps({"success": False, "error": {"code": code, "message": message}})
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, with the head deadline and the connection cap."""

    __slots__ = ("_awaiting_head", "_head_timer", "_limits")

    def __init__(self, manager: web.Server, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limits = self._limits
        limits.open += 1
        if limits.max_connections and limits.open > limits.max_connections:
            self._drop("connection_limit", "too_many_connections", "the gateway has too many open connections")
            return
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._limits.open -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None:
            self._arm()  # the first byte of the next request on a kept-alive connection
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # the parser has a whole head (or answered a bad one)
            self._awaiting_head = False
            self._disarm()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        # The next bytes start a new head, unless one is queued already (pipelining) or the body
        # is still arriving (aiohttp reads and drops the rest of an unread body, time-bounded).
        self._awaiting_head = not self._messages and request.content.is_eof()
        return result

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self._force_close:
            message = f"the request head did not arrive within {self._limits.header_timeout:g}s"
            self._drop("header_timeout", "header_timeout", message)

    def _drop(self, reason: str, code: str, message: str) -> None:
        if self.transport is not None:
            headers = {"Retry-After": "1"} if code == "too_many_connections" else None
            self.transport.write(_answer(code, message, headers))
        self._limits.on_drop(reason)
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
        super().__init__(app, auto_decompress=False, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer
        assert isinstance(server, GuardedServer)
        server.limits = self.limits
        return server
