"""Jinja2 filters: times, rates and durations shown the same way on every page."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from dashboard.state import DASHBOARD, SESSION


def setup_filters(env: jinja2.Environment) -> None:
    env.filters.update(ago=ago, when=when, pct=pct, ms=ms, pretty=pretty, num=num)


def render(name: str, request: web.Request, context: dict[str, Any], status: int = 200) -> web.Response:
    """``aiohttp_jinja2.render_template`` with what every page needs (also on error pages, which
    the guard renders before any handler ran)."""
    return aiohttp_jinja2.render_template(name, request, {**page_context(request), **context}, status=status)


def page_context(request: web.Request) -> dict[str, Any]:
    """What every template gets: the CSRF token of the session, static URLs, the dashboard root."""
    dash = request.app[DASHBOARD]
    session = request.get(SESSION)
    router = request.app.router

    def static(path: str) -> str:
        return str(router["static"].url_for(filename=path))

    return {
        "session": session,
        "csrf": dash.sessions.csrf_token(session) if session else "",
        "static": static,
        "root": str(router["overview"].url_for()),
        "refresh": dash.services.settings.dashboard.refresh,
        "section": _section(request),
    }


def _section(request: web.Request) -> str:
    tail = request.path.removeprefix(str(request.app.router["overview"].url_for()))
    if tail.startswith("webhooks/"):
        return "dead" if request.query.get("outcome") == "dead" else "events"
    return "live" if tail.startswith("live/") else "overview" if tail == "" else ""


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def ago(value: Any, now: float | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``; an em dash for never."""
    ts = _ts(value)
    if ts is None:
        return "—"
    seconds = max(0, int((time.time() if now is None else now) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def when(value: Any) -> str:
    """An exact UTC time for titles and tables: ``2026-12-03 08:11:13Z``."""
    ts = _ts(value)
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def pct(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.0f}%" if value in (0, 1) else f"{value * 100:.1f}%"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def num(value: float | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def pretty(value: bytes | str) -> str:
    """JSON indented for reading; anything else as it is."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
