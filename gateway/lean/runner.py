"""``LeanRunner``: an ``aiohttp.web.AppRunner`` whose connections start on the lean path.

The app, its routes, lifecycle and shutdown stay aiohttp's; only the protocol factory changes.
``LeanServer`` is aiohttp's ``web.Server`` (it still makes the protocol of every connection the
lean path hands over) plus the set of lean connections, which its ``pre_shutdown`` and
``shutdown`` drain the way aiohttp drains its own: idle connections close at once, a request
being answered gets up to the shutdown timeout, then is cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.app_state import SERVICES, Services
from gateway.connections import ConnectionLimits, GatewayRunner, GuardedServer
from gateway.lean.protocol import LeanProtocol
from gateway.pipeline.runner import PIPELINE, Pipeline
from gateway.providers.spec import ProviderSpec

#: aiohttp's default keep-alive timeout of an idle connection (``GatewayRunner`` sets its own).
KEEPALIVE_TIMEOUT = 3630.0


class LeanServer(GuardedServer):
    """aiohttp's protocol factory, with connections starting on the lean path; a connection
    handed on gets the guarded aiohttp protocol (head deadline, parser refusals as JSON), and
    both kinds count towards ``limits`` (the connection cap)."""

    def __init__(
        self, base: web.Server, services: Services, pipeline: Pipeline, limits: ConnectionLimits, **kwargs: Any
    ) -> None:
        super().__init__(base.request_handler, request_factory=base.request_factory, **kwargs)
        self.limits = limits
        self.services = services
        self.pipeline = pipeline
        self.lean_connections: set[LeanProtocol] = set()
        self.closing = False
        self.handoffs = 0  # connections given to aiohttp's protocol (a count for tests and debugging)
        self.keepalive_timeout = float(kwargs.get("keepalive_timeout", KEEPALIVE_TIMEOUT))
        self._sweeper: asyncio.Task[None] | None = None

    def providers(self) -> Mapping[str, ProviderSpec]:
        return self.services.settings.providers  # read per request: a reload may change them

    def __call__(self) -> LeanProtocol:  # type: ignore[override]
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="lean-keepalive")
        return LeanProtocol(self)

    def fallback(self) -> RequestHandler:
        """The aiohttp protocol that takes over a connection the lean path hands on."""
        self.handoffs += 1
        return super().__call__()

    def pre_shutdown(self) -> None:
        self.closing = True
        for conn in list(self.lean_connections):
            conn.close_idle()
        super().pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiohttp's signature
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(self._drain(timeout), super().shutdown(timeout))

    async def _drain(self, grace: float | None) -> None:
        busy = {task for conn in self.lean_connections if (task := conn.task) is not None}
        if busy:  # no new request starts once closing: each ends by closing its connection
            await asyncio.wait(busy, timeout=grace)
        late = [task for conn in list(self.lean_connections) if (task := conn.abort()) is not None]
        if late:  # let the cancelled pipelines run their cleanups before the stores close
            await asyncio.wait(late, timeout=1.0)

    async def _sweep(self) -> None:
        """Close lean connections idle for longer than the keep-alive timeout (checked every few s)."""
        interval = min(10.0, self.keepalive_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            limit = time.monotonic() - self.keepalive_timeout
            for conn in list(self.lean_connections):
                if conn.idle_since < limit:
                    conn.close_idle()


class LeanRunner(GatewayRunner):
    """``GatewayRunner`` for the gateway app: webhook requests take the lean path."""

    async def _make_server(self) -> web.Server:
        base = await web.AppRunner._make_server(self)  # aiohttp's, before GatewayRunner's class swap
        return LeanServer(base, self.app[SERVICES], self.app[PIPELINE], self.limits, **self._kwargs)
