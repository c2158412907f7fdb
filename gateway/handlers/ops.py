"""Operations endpoints: /healthz (alive), /readyz (ready to take traffic), /metrics, /openapi.yaml."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from datetime import UTC, datetime
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.app_state import SERVICES, Services
from gateway.errors import StoreError
from gateway.responses import json_response

SCRAPE_READ_TIMEOUT = 2.0  # under the usual scrape_timeout (10 s): a slow store must not stall the scrape


async def healthz(request: web.Request) -> web.Response:
    return json_response(200, {"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Ready unless draining or a dependency whose failure policy is "closed" is unreachable:
    the state store when dedup or rate limits fail closed, the event store in queue mode."""
    services = request.app[SERVICES]
    state = services.settings.state
    store_ok = await services.store.ping()
    events_ok = await services.events.ping()
    store_needed = "closed" in (state.dedup_on_error, state.rate_limit_on_error)
    events_needed = services.settings.upstream.mode == "queue"
    ready = not services.draining and (store_ok or not store_needed) and (events_ok or not events_needed)
    checks = {"store": store_ok, "events": events_ok, "draining": services.draining}
    return json_response(200 if ready else 503, {"ready": ready, "checks": checks})


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    await read_store_gauges(services)
    body = services.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@functools.cache
def _openapi_text() -> bytes:
    return resources.files("gateway").joinpath("openapi.yaml").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_openapi_text(), content_type="application/yaml")


async def read_store_gauges(services: Services) -> None:
    """Set the gauges read from the stores: their health and the outbox's depth and oldest age.

    Read at scrape time, not on the request path, so webhooks pay nothing for them. A store that
    does not answer in time reads as down and its outbox gauges keep their last value.
    """
    m = services.metrics
    state_ok, events_ok = await asyncio.gather(_answers(services.store.ping()), _answers(services.events.ping()))
    m.store_up.labels("state").set(int(state_ok))
    m.store_up.labels("events").set(int(events_ok))
    if not events_ok:
        return
    try:
        backlog = await asyncio.wait_for(services.events.backlog(), SCRAPE_READ_TIMEOUT)
    except (StoreError, TimeoutError):
        return
    for status, count in backlog.counts.items():
        m.queue_events.labels(status).set(count)
    oldest = backlog.oldest_pending
    m.queue_oldest_age.set(max(0.0, (datetime.now(UTC) - oldest).total_seconds()) if oldest else 0.0)


async def _answers(ping: Awaitable[bool]) -> bool:
    try:
        return bool(await asyncio.wait_for(ping, SCRAPE_READ_TIMEOUT))
    except (StoreError, TimeoutError, OSError):
        return False
