"""The overview page, its refreshing partial, and the JSON the seed's pages polled."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from dashboard.overview import key_usage, provider_cards, rejection_counts, store_panel
from dashboard.state import DASHBOARD, SESSION
from dashboard.templating import render
from gateway.errors import Rejection

WINDOWS = ("hour", "day")


async def _context(request: web.Request) -> dict[str, Any]:
    dash = request.app[DASHBOARD]
    settings = dash.services.settings
    return {
        "session": request[SESSION],
        "cards": provider_cards(dash.services, dash.sampler, await key_usage(dash)),
        "rejections": rejection_counts(dash.sampler),
        "store": await store_panel(dash.services),
        "mode": settings.upstream.mode,
        "refresh": settings.dashboard.refresh,
        "since": dash.sampler.started,
        "now": time.time(),
        "audit": list(dash.audit.recent)[:10],
    }


async def overview(request: web.Request) -> web.StreamResponse:
    return render("overview.html", request, await _context(request))


async def overview_partial(request: web.Request) -> web.StreamResponse:
    return render("partials/overview.html", request, await _context(request))


async def status_json(request: web.Request) -> web.StreamResponse:
    """The seed's ``ajax/webhooks/status/``: provider health and store health, as JSON."""
    context = await _context(request)
    store = context["store"]
    body = {
        "success": True,
        "providers": context["cards"],
        "rejections": context["rejections"],
        "health": store["health"],
        "queue": store["queue"] and {**store["queue"], "oldest_pending_age_seconds": store["oldest_age"]},
        "since": context["since"],
    }
    return web.json_response(body, dumps=_dumps)


async def stats_json(request: web.Request) -> web.StreamResponse:
    """The seed's ``ajax/webhooks/stats/?days=N``: the management API's ``/stats/`` numbers."""
    raw = request.query.get("days", "7")
    if len(raw) > 3 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise Rejection("invalid_parameter", "days must be a whole number from 1 to 366")
    summary = await request.app[DASHBOARD].services.events.stats(int(raw))
    return web.json_response({"success": True, **summary})


async def series_json(request: web.Request) -> web.StreamResponse:
    window = request.query.get("window", "hour")
    if window not in WINDOWS:
        raise Rejection("invalid_parameter", "window must be hour or day")
    return web.json_response({"success": True, **request.app[DASHBOARD].sampler.series(window)})


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
