"""The dashboard's sub-application: routes, templates, security headers and the staff guard."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from dashboard import actions, events, live, pages, testsend
from dashboard.audit import AuditTrail
from dashboard.auth import Sessions
from dashboard.guard import guard, login_form, login_submit, logout
from dashboard.sampler import Sampler
from dashboard.state import DASHBOARD, Dashboard
from dashboard.templating import setup_filters
from gateway import routes
from gateway.app_state import Services

PREFIX = routes.ADMIN
STATIC = Path(__file__).parent / "static"


def admin_app(services: Services, webhook_base: str = "") -> web.Application:
    """The sub-application to mount at ``PREFIX`` (``mount`` does it)."""
    settings = services.settings
    keys = settings.dashboard.keys or settings.api_keys
    app = web.Application(middlewares=[guard])
    app[DASHBOARD] = Dashboard(
        services, Sessions(keys, settings.dashboard.session_ttl), Sampler(services.metrics), AuditTrail(), webhook_base
    )
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    setup_filters(env)
    app.cleanup_ctx.append(_sampling)
    app.on_shutdown.append(_end_streams)
    _routes(app.router)
    return app


def _routes(r: web.UrlDispatcher) -> None:
    r.add_get("/login/", login_form, name="login")
    r.add_post("/login/", login_submit, name="login_submit")
    r.add_post("/logout/", logout)
    r.add_get("/", pages.overview, name="overview")
    r.add_get("/partials/overview/", pages.overview_partial)
    r.add_get("/ajax/webhooks/status/", pages.status_json)
    r.add_get("/ajax/webhooks/stats/", pages.stats_json)
    r.add_get("/ajax/webhooks/series/", pages.series_json)
    r.add_get("/webhooks/", events.events_page)
    r.add_get("/webhooks/replay/preview/", actions.replay_preview)
    r.add_post("/webhooks/replay/", actions.replay_bulk)
    r.add_get("/webhooks/{id}/", events.detail_page)
    r.add_post("/webhooks/{id}/replay/", actions.replay_single)
    r.add_post("/dead-letters/requeue/", actions.dead_requeue)
    r.add_post("/dead-letters/discard/", actions.dead_discard)
    r.add_post("/providers/{provider}/test/", testsend.send_test)
    r.add_get("/live/", live.live_page)
    r.add_get("/live/stream/", live.stream)
    r.add_static("/static/", STATIC, name="static", append_version=True)


def mount(app: web.Application, services: Services, webhook_base: str = "") -> None:
    """Serve the dashboard under ``PREFIX`` of ``app`` (the webhook app or its own listener's)."""
    app.add_subapp(PREFIX, admin_app(services, webhook_base))


async def _end_streams(app: web.Application) -> None:
    """Live tails would otherwise hold the drain open for the whole shutdown timeout."""
    app[DASHBOARD].closing.set()
    if (tail := app[DASHBOARD].tail) is not None:
        tail.shutdown()


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[DASHBOARD].sampler.run(), name="dashboard-sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
