"""Live tail over Server-Sent Events: every answered webhook as it is answered.

The tail subscribes to the gateway's feed (``gateway.observe``): accepted events, duplicates and
rejections arrive one by one, numbered (the SSE id). A new tail starts with the store's newest
events and the last two minutes' rejection counts (``live_poll.backlog``), then a ``cursor``
frame; a reconnecting browser (``Last-Event-ID``) or a resumed tail (``?last_event_id=``) gets
what it missed from the shared ring (``tailhub``), or a ``missed`` frame saying what it cannot
show. A tail that falls behind the feed gets a ``missed`` frame with the count it lost.

With ``run --workers N`` each worker's feed holds only its own requests, so there the tail reads
the shared event store instead (``live_poll``): stored events and rejection counts per minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from dashboard.auth import COOKIE
from dashboard.guard import HEADERS
from dashboard.live_poll import HEARTBEAT, backlog, poll_tail
from dashboard.state import DASHBOARD, SESSION, Dashboard
from dashboard.tailhub import TailHub
from dashboard.templating import render
from gateway.errors import Rejection
from gateway.observe import Observed, Subscription
from gateway.outcomes import ACCEPTED

BATCH = 200  # records written in one chunk when many wait
WAIT = 0.5  # seconds between looks at the session, the shutdown and the connection when idle


async def live_page(request: web.Request) -> web.StreamResponse:
    return render("live.html", request, {"session": request[SESSION]})


def _last_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw == "":
        return None
    if len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        raise Rejection("invalid_parameter", "Last-Event-ID must be an event number")
    return int(raw)


def frame(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def seen_frame(s: Observed) -> bytes:
    """A feed record: ``webhook`` for an accepted event, ``rejected`` for the rest."""
    row = {
        "received_at": datetime.fromtimestamp(s.at, UTC).isoformat(timespec="milliseconds"),
        "provider": s.provider, "event_id": s.event_id, "event_type": s.event_type, "outcome": s.outcome,
        "http_status": s.status, "upstream_status": s.upstream_status, "latency_ms": s.latency_ms,
    }  # fmt: skip
    if s.outcome in ACCEPTED:
        path = "?" + urlencode({"provider": s.provider, "event_id": s.event_id})
        return frame("webhook", {**row, "path": path}, s.seq)
    return frame("rejected", {**row, "code": s.outcome, "count": 1, "reason": s.reason}, s.seq)


def missed_frame(count: int | None, why: str) -> bytes:
    text = f"{count} webhook(s) not shown: {why}" if count else f"webhooks answered {why} are not shown"
    return frame("missed", {"count": count, "message": text})


async def stream(request: web.Request) -> web.StreamResponse:
    last = _last_id(request)
    response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")
    dash = request.app[DASHBOARD]
    token = request.cookies.get(COOKIE)

    def watching() -> bool:  # ends with the session, the shutdown or the browser
        gone = request.transport is None or request.transport.is_closing()
        return not gone and dash.sessions.verify(token) is not None and not dash.closing.is_set()

    with contextlib.suppress(ConnectionError):  # the browser went away (closed the tab, paused the tail)
        if dash.services.feed.partial:  # its first look (without an id) is the backlog
            await poll_tail(response, dash.services.events, last, frame, watching, dash.closing)
        else:
            await _feed_tail(dash, response, last, watching)
        if not dash.closing.is_set() and dash.sessions.verify(token) is None:
            await response.write(frame("expired", {"message": "the session expired: log in again"}))
    return response


def hub_of(dash: Dashboard) -> TailHub:
    if dash.tail is None:
        dash.tail = TailHub(dash.services.feed)
    return dash.tail


async def _feed_tail(dash: Dashboard, response: web.StreamResponse, last: int | None, watching: Any) -> None:
    hub = hub_of(dash)
    cursor = dash.services.feed.seq
    sub = hub.open()
    try:
        if last is None:
            await response.write(await backlog(dash.services.events, frame) + frame("cursor", {}, cursor))
        else:
            replay, missed = hub.ring.since(last)
            if missed != 0:
                await response.write(missed_frame(missed, "while the tail was away"))
            await response.write(b"".join(seen_frame(s) for s in replay))
        await _follow(sub, response, watching)
    finally:
        hub.close(sub)


async def _follow(sub: Subscription, response: web.StreamResponse, watching: Any) -> None:
    dropped, quiet = 0, 0.0
    while watching():
        try:
            first = await asyncio.wait_for(sub.get(), WAIT)
        except TimeoutError:
            quiet += WAIT
            if quiet >= HEARTBEAT:
                await response.write(b": keep-alive\n\n")
                quiet = 0.0
            continue
        batch = [first, *sub.drain(BATCH - 1)]
        chunk = b"".join(seen_frame(s) for s in batch)
        if sub.dropped > dropped:
            chunk += missed_frame(sub.dropped - dropped, "the tail fell behind")
            dropped = sub.dropped
        await response.write(chunk)
        quiet = 0.0
