"""Builds the aiohttp application: routes, the pipeline, and the lifecycle of shared parts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.app_state import SERVICES, Services
from gateway.delivery import Delivery
from gateway.errors import Rejection
from gateway.events import event_store_from_settings
from gateway.forwarder import Forwarder
from gateway.handlers import events, management, ops
from gateway.metrics import Metrics
from gateway.pipeline.body import expect_continue
from gateway.pipeline.runner import PIPELINE, Pipeline, error_response
from gateway.pipeline.stage import default_stages
from gateway.settings.model import Settings
from gateway.stats import StatsLedger
from gateway.stores import StoreError, store_from_url
from gateway.tracing import make_tracer

API = "/payments/api/webhooks"
log = logging.getLogger("gateway.app")


def build_services(settings: Settings) -> Services:
    metrics = Metrics()
    ledger = StatsLedger()
    events = event_store_from_settings(settings.events, ledger)
    forwarder = Forwarder(settings.upstream, metrics)
    delivery = None
    if settings.upstream.mode == "queue":
        delivery = Delivery(events, forwarder, settings.upstream.queue, settings.providers, metrics)
    return Services(
        settings=settings,
        store=store_from_url(settings.state, settings.dedup.max_entries),
        forwarder=forwarder,
        metrics=metrics,
        events=events,
        stats=ledger,
        delivery=delivery,
        tracer=make_tracer(settings.tracing),
    )


def build_app(settings: Settings, services: Services | None = None) -> web.Application:
    services = services or build_services(settings)
    largest = max(p.max_body_bytes for p in settings.providers.values())
    app = web.Application(middlewares=[json_errors], client_max_size=largest)
    app[SERVICES] = services
    app.cleanup_ctx.append(_lifecycle)
    pipeline = Pipeline(services, default_stages(services))
    app[PIPELINE] = pipeline
    r = app.router
    r.add_get(f"{API}/providers/", management.providers)
    r.add_get(f"{API}/health/", management.health)
    r.add_get(f"{API}/stats/", management.stats)
    r.add_get(f"{API}/events/", events.list_events)
    r.add_post(f"{API}/events/replay/", events.replay_events)
    r.add_get(API + "/events/{id}/", events.show_event)
    r.add_post(API + "/events/{id}/replay/", events.replay_event)
    r.add_get(f"{API}/dead-letters/", events.list_dead)
    r.add_delete(f"{API}/dead-letters/", events.purge_dead)
    expect = expect_continue(settings.providers)
    r.add_route("*", API + "/{provider}/", pipeline.handle, expect_handler=expect)
    r.add_route("*", API + "/{provider}", pipeline.handle, expect_handler=expect)
    r.add_get("/healthz", ops.healthz)
    r.add_get("/readyz", ops.readyz)
    r.add_get("/metrics", ops.metrics)
    r.add_get("/openapi.yaml", ops.openapi)
    return app


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON, including aiohttp's own 404 and 405."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        rej = Rejection("method_not_allowed", f"{request.method} is not allowed here", {"Allow": ",".join(sorted(exc.allowed_methods))})
        return error_response(rej)
    except web.HTTPNotFound:
        return error_response(Rejection("not_found", "no such endpoint"))
    except web.HTTPException:
        raise
    except Exception:  # a bug in a handler: still a JSON answer, and the traceback in the log
        log.exception("handler failure", extra={"path": request.path})
        return error_response(Rejection("internal_error", "the gateway failed to answer this request"))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    await services.forwarder.start()
    await services.events.start()
    if services.delivery is not None:
        services.delivery.start()
    retention = asyncio.create_task(_retention(services), name="retention")
    yield
    retention.cancel()
    if services.delivery is not None:
        await services.delivery.stop(services.settings.shutdown_timeout)
    await services.forwarder.close()
    await services.events.close()
    await services.store.close()


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
