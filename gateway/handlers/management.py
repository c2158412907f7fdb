"""Management API (API key): providers, health, stats. Numbers come from real counters only."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import __version__
from gateway.app_state import Services
from gateway.errors import Rejection
from gateway.handlers.auth import managed
from gateway.responses import json_response
from gateway.secrets import mask_url


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def provider_rows(services: Services) -> list[dict[str, Any]]:
    settings = services.settings
    rows = []
    for name, spec in settings.providers.items():
        sig = spec.signature
        rows.append(
            {
                "name": name,
                "display_name": spec.display_name,
                "webhook_url": settings.webhook_url(name),
                "signature_header": sig.header.lower() if sig else None,
                "signature_algorithm": spec.algorithm_label,
                "icon": spec.icon,
                "preset": spec.preset or None,
                "docs": spec.docs or None,
                "timestamp_tolerance": spec.timestamp.tolerance if spec.timestamp else None,
                "secrets_configured": len(sig.secrets) if sig else 0,
                "last_event_at": _iso(services.last_event.get(name)),
            }
        )
    return rows


@managed
async def providers(request: web.Request, services: Services) -> web.Response:
    return json_response(200, {"success": True, "providers": provider_rows(services)})


@managed
async def health(request: web.Request, services: Services) -> web.Response:
    store_ok = await services.store.ping()
    events_ok = await services.events.ping()
    fwd = services.forwarder
    upstream_ok = not (fwd.last_failure and (not fwd.last_success or fwd.last_failure > fwd.last_success))
    status = "healthy" if store_ok and events_ok and upstream_ok and not services.draining else "degraded"
    body = {
        "success": True,
        "status": status,
        "version": __version__,
        "uptime_seconds": round(time.time() - services.started, 3),
        "draining": services.draining,
        "store": {"url": mask_url(services.store.url), "ok": store_ok},
        "events": {"url": mask_url(services.events.url), "ok": events_ok, "durable": services.events.durable},
        "upstream": {
            "url": mask_url(services.settings.upstream.url),
            "mode": services.settings.upstream.mode,
            "last_success_at": _iso(fwd.last_success),
            "last_failure_at": _iso(fwd.last_failure),
            "ok": upstream_ok,
        },
        "providers": [
            {"name": n, "last_event_at": _iso(services.last_event.get(n))} for n in services.settings.providers
        ],
        # webhook-gateway dev --ngrok: where providers reach this process, and whether ngrok still lists it
        "tunnel": await services.tunnel.describe() if services.tunnel is not None else None,
    }
    return json_response(200, body)


@managed
async def stats(request: web.Request, services: Services) -> web.Response:
    summary = await services.events.stats(_days(request.query.get("days", "7")))
    return json_response(200, {"success": True, **summary})


def _days(raw: str) -> int:
    if len(raw) > 3 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise Rejection("invalid_parameter", "days must be a whole number from 1 to 366")
    return int(raw)
