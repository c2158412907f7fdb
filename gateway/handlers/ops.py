"""Operations endpoints: /healthz (alive), /readyz (ready to take traffic), /metrics, /openapi.yaml."""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.app_state import SERVICES
from gateway.pipeline.runner import json_response


async def healthz(request: web.Request) -> web.Response:
    return json_response(200, {"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    store_ok = await services.store.ping()
    ready = store_ok and not services.draining
    checks = {"store": store_ok, "draining": services.draining}
    return json_response(200 if ready else 503, {"ready": ready, "checks": checks})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    text = resources.files("gateway").joinpath("openapi.yaml").read_bytes()
    return web.Response(body=text, content_type="application/yaml")
