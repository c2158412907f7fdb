"""Live tail over Server-Sent Events: stored events as they arrive, and rejection counts.

The stream polls the event store (newest first, a short page) twice a second; the webhook route
does nothing for it. Each stored event carries its number as the SSE id, so a reconnecting
browser (``Last-Event-ID``) or a resumed tail (``?last_event_id=``) gets what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from dashboard.auth import COOKIE
from dashboard.guard import HEADERS
from dashboard.state import DASHBOARD, SESSION
from dashboard.templating import render
from gateway.errors import Rejection, StoreError
from gateway.events.base import EventFilter, EventRecord

POLL = 0.5
BACKLOG = 20
HEARTBEAT = 15.0


async def live_page(request: web.Request) -> web.StreamResponse:
    return render("live.html", request, {"session": request[SESSION]})


def _last_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw == "":
        return None
    if len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        raise Rejection("invalid_parameter", "Last-Event-ID must be an event number")
    return int(raw)


def _frame(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _row(r: EventRecord) -> dict[str, Any]:
    return {**r.summary(), "url": f"../webhooks/{r.id}/"}


async def stream(request: web.Request) -> web.StreamResponse:
    last = _last_id(request)
    response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")
    with contextlib.suppress(ConnectionError):  # the browser went away (closed the tab, paused the tail)
        await _tail(request, response, last)
    return response


async def _tail(request: web.Request, response: web.StreamResponse, last: int | None) -> None:
    dash = request.app[DASHBOARD]
    token = request.cookies.get(COOKIE)
    seen: dict[tuple[Any, ...], int] = {}
    quiet = 0.0
    while dash.sessions.verify(token) is not None and not dash.closing.is_set():  # ends with the session
        try:
            fresh = await _new_events(dash.services.events, last)
            rejected = await _new_rejections(dash.services.events, seen)
        except StoreError:
            fresh, rejected = [], []
        for row in rejected:  # first: a count is per minute, so the exact times of events go on top
            await response.write(_frame("rejected", row))
        for record in fresh:
            await response.write(_frame("webhook", _row(record), record.id))
            last = record.id
        quiet = 0.0 if fresh or rejected else quiet + POLL
        if quiet >= HEARTBEAT:
            await response.write(b": keep-alive\n\n")
            quiet = 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dash.closing.wait(), POLL)
    if not dash.closing.is_set():
        await response.write(_frame("expired", {"message": "the session expired: log in again"}))


async def _new_events(store: Any, last: int | None) -> list[EventRecord]:
    page: list[EventRecord] = await store.list(EventFilter(limit=BACKLOG if last is None else 100))
    fresh = [r for r in page if last is None or r.id > last]
    return list(reversed(fresh))


async def _new_rejections(store: Any, seen: dict[tuple[Any, ...], int]) -> list[dict[str, Any]]:
    """Rejections counted since the last poll (the store folds them per minute); the first poll
    sends the last two minutes' counts, as the event backlog does for events."""
    first = ("started",) not in seen
    seen[("started",)] = 0
    out = []
    recent = datetime.now(UTC) - timedelta(minutes=2)
    for r in await store.rejections(EventFilter(limit=100)):
        key: tuple[Any, ...] = (r.minute, r.provider, r.source, r.code)
        grown = r.count - seen.get(key, 0)
        seen[key] = r.count
        if grown > 0 and (not first or r.minute >= recent):
            out.append({"minute": r.minute, "provider": r.provider, "source": r.source, "code": r.code, "count": grown})
    if len(seen) > 1000:
        for key in sorted((k for k in seen if len(k) == 4), key=lambda k: k[0])[:-500]:
            del seen[key]
    return out
