"""Serve the gateway on uvloop; SIGTERM fails readiness, drains in-flight work, then exits."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop
from aiohttp import web

from gateway import reload, workers
from gateway.app import build_app, build_services, metrics_app
from gateway.app_state import Services
from gateway.connections import ConnectionLimits, GatewayRunner
from gateway.demo import demo_upstream_app
from gateway.lean.runner import LeanRunner
from gateway.routes import loopback_base
from gateway.settings.model import Settings

log = logging.getLogger("gateway.server")
DEMO_UPSTREAM_PORT = 9000

#: ``attach(services, primary)``: called once the services are built, before listening (so it can
#: subscribe to ``services.feed`` in time); the coroutine it returns runs from listening until stop.
#: ``primary`` is True in one process only (worker 0). ``dev`` uses it for its banner and event lines;
#: with an attach the demo upstream prints nothing and the demo banner is left to it.
Attach = Callable[[Services, bool], Coroutine[Any, Any, None]]


def run(settings: Settings, demo: bool = False, workers: int = 1, attach: Attach | None = None) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code."""
    if workers <= 1:
        return uvloop.run(_serve(settings, demo, attach=attach))
    from gateway.workers import supervise

    return supervise(
        workers,
        lambda index: uvloop.run(
            _serve(settings, demo and index == 0, reuse_port=True, attach=attach, primary=index == 0)
        ),
    )


async def _serve(
    settings: Settings, demo: bool, reuse_port: bool = False, attach: Attach | None = None, primary: bool = True
) -> int:
    services = build_services(settings)
    services.feed.partial = reuse_port  # one of several workers: its feed holds only its own requests
    watch = attach(services, primary) if attach is not None else None
    runners: list[web.AppRunner] = []
    try:
        if demo:
            upstream = demo_upstream_app(quiet=watch is not None)
            runners.append(await _start(upstream, "127.0.0.1", DEMO_UPSTREAM_PORT, 5.0))
        app = build_app(settings, services)
        gateway = await _start(
            app, settings.host, settings.port, settings.shutdown_timeout, reuse_port, services, lean=True
        )
        runners.append(gateway)
        if settings.dashboard.enabled and settings.dashboard.port:
            runners.append(await _start_dashboard(settings, services, reuse_port))
        if settings.metrics_port:  # closed last (runners stop in reverse): scrapes see the drain
            scrape = await _start(metrics_app(services), settings.host, settings.metrics_port, 1.0, reuse_port)
            runners.insert(0, scrape)
    except OSError as exc:
        print(f"webhook-gateway: cannot listen: {exc.strerror} ({exc})", file=sys.stderr)
        for runner in runners:
            await runner.cleanup()
        if watch is not None:
            watch.close()
        return 2
    _tune_gc()
    log.info("listening", extra={"url": settings.public_url, "providers": sorted(settings.providers)})
    if demo and watch is None:
        _banner(settings)
    watching = asyncio.create_task(watch, name="attach") if watch is not None else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if not settings.file.startswith("<"):  # a real file (not the embedded demo): reloadable
        loop.add_signal_handler(signal.SIGHUP, reload.reload, app)
        if workers.reload_pending():  # a worker's SIGHUP that came while it started
            loop.call_soon(reload.reload, app)
        watcher = asyncio.create_task(reload.watch(app), name="config-watch")
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    # Drain: readiness fails first so the Service stops routing here, then the listener closes
    # and in-flight webhooks get up to shutdown.timeout to finish (their dedup claims settle).
    services.draining = True
    services.shutdown_deadline = time.monotonic() + settings.drain_delay + settings.shutdown_timeout
    log.info("draining", extra={"drain_delay": settings.drain_delay, "timeout": settings.shutdown_timeout})
    await asyncio.sleep(settings.drain_delay)
    for runner in reversed(runners):
        await runner.cleanup()
    if watching is not None:  # after the drain: the last answers get their lines too
        await asyncio.sleep(0)
        watching.cancel()
    log.info("stopped")
    return 0


async def _start(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    reuse_port: bool = False,
    services: Services | None = None,
    lean: bool = False,
) -> web.AppRunner:
    """Serve ``app``; with ``services`` under the connection limits, and with ``lean`` too webhook
    requests take the lean path (``gateway.lean``)."""
    kwargs: dict[str, Any] = {"access_log": None, "handle_signals": False, "shutdown_timeout": shutdown_timeout}
    runner: web.AppRunner
    if services is None:
        runner = web.AppRunner(app, **kwargs)
    elif lean:
        runner = LeanRunner(app, connection_limits(services), **kwargs)
    else:
        runner = GatewayRunner(app, connection_limits(services), **kwargs)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


async def _start_dashboard(settings: Settings, services: Services, reuse_port: bool) -> web.AppRunner:
    """The admin UI on its own listener (``dashboard.listen``), off the public webhook port."""
    from dashboard import mount

    root = web.Application()
    mount(root, services, webhook_base=loopback_base(settings.host, settings.port))
    dash = settings.dashboard
    log.info("dashboard listening", extra={"host": dash.host, "port": dash.port})
    return await _start(root, dash.host, dash.port, settings.shutdown_timeout, reuse_port, services)


def connection_limits(services: Services) -> ConnectionLimits:
    """The settings' header deadline and connection cap, counted in ``services.metrics``."""
    metrics = services.metrics
    return ConnectionLimits(
        header_timeout=services.settings.header_timeout,
        max_connections=services.settings.max_connections,
        on_drop=lambda reason: metrics.child(metrics.connections_dropped, reason).inc(),
    )


def _tune_gc() -> None:
    """Keep the collector off the request path's tail latency.

    Everything alive once the server listens (modules, config, the app) is moved out of the
    collector's view with ``gc.freeze()``: a full collection no longer walks the ~100k objects of
    the imported libraries (measured under load: full collections of 40 ms before, about 10 ms
    after). A first threshold of 3,000 (700 by default) makes young collections rarer without
    making each one long (about 2 ms at most); webhook objects are short-lived and acyclic, so
    reference counting frees them and the collector finds little.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(3_000, 10, 10)


def _banner(settings: Settings) -> None:
    url = settings.webhook_url("stripe")
    print(
        f"""
  Webhook Gateway (demo) on {settings.public_url}: embedded config, in-memory state,
  demo upstream on http://127.0.0.1:{DEMO_UPSTREAM_PORT}/events printing every event it receives.

  Send a signed test webhook from another terminal:
      .venv/bin/webhook-gateway send stripe
  or with curl (signature made by `sign`, valid for 5 minutes):
      .venv/bin/webhook-gateway sign stripe --curl | sh
  Webhook URL:  {url}
  Providers:    {settings.public_url}/payments/api/webhooks/providers/  (X-API-Key: demo-api-key)
  Metrics:      {settings.public_url}/metrics
  Dashboard:    {settings.public_url}/payments/admin/  (log in with demo-api-key)
""",
        flush=True,
    )
