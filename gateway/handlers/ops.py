"""Operations endpoints: /healthz (alive), /readyz (ready to take traffic), /metrics, /openapi.yaml."""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.app_state import SERVICES
from gateway.responses import json_response


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
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@functools.cache
def _openapi_text() -> bytes:
    return resources.files("gateway").joinpath("openapi.yaml").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_openapi_text(), content_type="application/yaml")
