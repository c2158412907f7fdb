"""Builds the aiohttp application: routes, the pipeline, and the lifecycle of shared parts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import logs, passthrough, routes
from gateway.addresses import Network
from gateway.app_state import SERVICES, Services
from gateway.delivery import Delivery
from gateway.errors import Rejection, StoreError
from gateway.events import EventStoreOptions, event_store_from_url
from gateway.forwarder import Forwarder
from gateway.handlers import events, management, ops
from gateway.metrics import FLUSH_INTERVAL, Metrics
from gateway.pipeline.body import expect_continue
from gateway.pipeline.runner import PIPELINE, Pipeline
from gateway.pipeline.stage import default_stages
from gateway.responses import error_response
from gateway.settings.model import Settings
from gateway.stats import StatsLedger
from gateway.stores import StoreOptions, store_from_url
from gateway.tracing import make_tracer

log = logging.getLogger("gateway.app")


def build_services(settings: Settings) -> Services:
    metrics = Metrics()
    metrics.init_settings(settings)
    ledger = StatsLedger()
    ev = settings.events
    options = EventStoreOptions(
        ev.max_memory_events, ev.migrate_on_start, ev.pool_size, ev.timeout, ev.max_memory_bytes
    )
    events = event_store_from_url(ev.url, options, ledger)
    events.on_audit_lost = lambda count, reason: metrics.audit_lost.labels(reason).inc(count)
    forwarder = Forwarder(settings.upstream, metrics)
    delivery = None
    if settings.upstream.mode == "queue":
        delivery = Delivery(events, forwarder, settings.upstream.queue, settings.providers, metrics)
    return Services(
        settings=settings,
        store=store_from_url(settings.state.url, _store_options(settings)),
        forwarder=forwarder,
        metrics=metrics,
        events=events,
        stats=ledger,
        delivery=delivery,
        tracer=make_tracer(settings.tracing),
    )


def _store_options(settings: Settings) -> StoreOptions:
    state = settings.state
    return StoreOptions(key_prefix=state.key_prefix, timeout=state.timeout, max_entries=settings.dedup.max_entries)


def build_app(settings: Settings, services: Services | None = None) -> web.Application:
    services = services or build_services(settings)
    logs.guard_parser_errors()
    largest = max(p.max_body_bytes for p in settings.providers.values())
    app = web.Application(client_max_size=largest)
    app[SERVICES] = services
    app.cleanup_ctx.append(_lifecycle)
    pipeline = Pipeline(services, default_stages(services))
    app[PIPELINE] = pipeline
    r = app.router
    for method, path, handler in (
        ("GET", routes.PROVIDERS, management.providers),
        ("GET", routes.HEALTH, management.health),
        ("GET", routes.STATS, management.stats),
        ("GET", routes.EVENTS, events.list_events),
        ("POST", routes.EVENTS_REPLAY, events.replay_events),
        ("GET", routes.EVENT, events.show_event),
        ("POST", routes.EVENT_REPLAY, events.replay_event),
        ("GET", routes.DEAD_LETTERS, events.list_dead),
        ("DELETE", routes.DEAD_LETTERS, events.purge_dead),
    ):
        r.add_route(method, path, json_safe(handler))
    expect = expect_continue(settings.providers)
    r.add_route("*", routes.WEBHOOK_ROUTE, pipeline.handle, expect_handler=expect)
    r.add_route("*", routes.WEBHOOK_ROUTE.rstrip("/"), pipeline.handle, expect_handler=expect)
    for path, handler in (
        (routes.HEALTHZ, ops.healthz), (routes.READYZ, ops.readyz), (routes.METRICS, ops.metrics),
        (routes.OPENAPI, ops.openapi),
    ):  # fmt: skip
        if path == routes.METRICS and settings.metrics_port:
            continue  # served by metrics_app() on listen.metrics_port only
        r.add_get(path, json_safe(handler))
    if settings.dashboard.enabled and not settings.dashboard.port:
        from dashboard import mount  # imported only when on: Jinja2 and friends stay unloaded otherwise

        mount(app, services)  # a sub-app: its middlewares never see a webhook
    if settings.passthrough.enabled:  # the last route: the webhook path never reaches it
        origin = settings.passthrough.origin(settings.upstream.url)
        app.cleanup_ctx.append(passthrough.lifecycle(settings.passthrough))

        def trusted() -> tuple[Network, ...]:  # as the config says now: a reload applies to the next request
            return services.settings.trusted_proxies

        r.add_route("*", "/{tail:.*}", passthrough.handler(origin, trusted, unmatched))
    else:
        r.add_route("*", "/{tail:.*}", unmatched)
    return app


def metrics_app(services: Services) -> web.Application:
    """``listen.metrics_port``: /metrics (and the probes, for a kubelet that checks this port)
    on a port of its own, so a Service or Ingress for webhooks never exposes it."""
    app = web.Application()
    app[SERVICES] = services
    for path, handler in ((routes.METRICS, ops.metrics), (routes.HEALTHZ, ops.healthz), (routes.READYZ, ops.readyz)):
        app.router.add_get(path, json_safe(handler))
    app.router.add_route("*", "/{tail:.*}", unmatched)
    return app


def json_safe(handler: Handler) -> Handler:
    """A handler whose bug still gets a JSON answer (and its traceback in the log). The webhook
    pipeline maps its own errors; this wraps the management and operations handlers. A wrapper,
    not a middleware: middlewares cost every request, webhooks included."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("handler failure", extra={"path": request.path})
            return error_response(Rejection("internal_error", "the gateway failed to answer this request"))

    return wrapper


async def unmatched(request: web.Request) -> web.StreamResponse:
    """The last route: JSON 405 (with Allow) when another route has this path, else JSON 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == "/{tail}":
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        rej = Rejection(
            "method_not_allowed", f"{request.method} is not allowed here", {"Allow": ",".join(sorted(allowed))}
        )
        return error_response(rej)
    return error_response(Rejection("not_found", "no such endpoint"))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    await services.forwarder.start()
    await services.events.start()
    if services.delivery is not None:
        services.delivery.start()
    retention = asyncio.create_task(_retention(services), name="retention")
    flusher = asyncio.create_task(_flush_metrics(services.metrics), name="metrics-flush")
    yield
    retention.cancel()
    flusher.cancel()
    if services.delivery is not None:
        # What is left of the shutdown budget after the HTTP drain (the pod's grace period covers
        # drain_delay + timeout, not each step's own timeout in turn).
        deadline = services.shutdown_deadline
        grace = services.settings.shutdown_timeout if deadline is None else deadline - time.monotonic()
        await services.delivery.stop(max(0.5, grace))
    await services.forwarder.close()
    await services.events.close()
    await services.store.close()


async def _flush_metrics(metrics: Metrics) -> None:
    """Move the request path's cheap counts into the prometheus metrics (``Metrics.child``)."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        metrics.flush()


async def _retention(services: Services) -> None:
    """Delete delivered and dead events past ``events.retention_days``, hourly, in the background."""
    while True:
        try:
            removed = await services.events.expire(services.settings.events.retention_days)
            if removed:
                log.info("retention", extra={"removed": removed})
        except StoreError:
            services.metrics.store_errors.labels("events", "retention").inc()
        await asyncio.sleep(3600)
