"""Staff actions: replay one, bulk replay by filter (count preview, then confirm), dead letters
requeued or discarded (one or all matching). Each one is audit-logged."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from dashboard.events import load_record
from dashboard.filters import parse_query
from dashboard.state import DASHBOARD, SESSION, session_of
from dashboard.templating import render
from gateway.errors import Rejection
from gateway.events.base import EventFilter
from gateway.handlers.events import MAX_LIMIT
from gateway.replay import replay_matching, replay_one


def _result(request: web.Request, ok: bool, message: str, status: int = 200) -> web.StreamResponse:
    name = "partials/result.html" if "HX-Request" in request.headers else "result.html"
    context = {"ok": ok, "message": message, "session": request[SESSION], "back": request.headers.get("Referer")}
    return render(name, request, context, status=status)


def _audit(request: web.Request, action: str, **what: Any) -> None:
    request.app[DASHBOARD].audit.record(session_of(request).who, action, **what)


async def replay_single(request: web.Request) -> web.StreamResponse:
    record = await load_record(request)
    services = request.app[DASHBOARD].services
    try:
        result = await replay_one(services, record.id)
    except Rejection as rej:  # sync mode: the upstream refused; say so in place
        _audit(request, "replay", id=record.id, result=rej.code)
        return _result(request, False, f"Replay failed: {rej.message} ({rej.code}).", 200)
    _audit(request, "replay", id=record.id, result=result and result["status"])
    status = result["status"] if result else "gone"
    return _result(request, True, f"Event #{record.id}: {status.replace('_', ' ')}.")


async def _filter(request: web.Request, status: str | None = None) -> EventFilter:
    """The events page's filter, from a form: a named filter is required (no 'replay everything')."""
    form = await request.post()
    query = parse_query(form, request.app[DASHBOARD].services.settings)
    if query.events is None:
        raise Rejection("invalid_parameter", "this filter selects rejected requests, which have no stored event")
    flt = replace(query.events, before_id=None, status=status or query.events.status)
    if not _named(flt):
        raise Rejection("invalid_parameter", "choose a filter first: acting on every stored event is refused")
    return flt


async def replay_preview(request: web.Request) -> web.StreamResponse:
    query = parse_query(request.query, request.app[DASHBOARD].services.settings)
    services = request.app[DASHBOARD].services
    flt = query.events and replace(query.events, before_id=None)
    named = flt and _named(flt)
    count = await services.events.count(flt) if flt and named else 0
    context = {
        "session": request[SESSION], "count": count, "named": bool(named), "params": query.without("before"),
        "queue_mode": services.delivery is not None, "sync_cap": MAX_LIMIT,
    }  # fmt: skip
    return render("partials/replay_preview.html", request, context)


async def replay_bulk(request: web.Request) -> web.StreamResponse:
    flt = replace(await _filter(request), limit=MAX_LIMIT)
    services = request.app[DASHBOARD].services
    try:
        result = await replay_matching(services, flt)
    except Rejection as rej:
        _audit(request, "bulk_replay", filter=_shown(flt), result=rej.code)
        return _result(request, False, f"Bulk replay stopped: {rej.message} ({rej.code}).")
    _audit(request, "bulk_replay", filter=_shown(flt), count=result["count"], result=result["status"])
    return _result(request, True, f"{result['count']} event(s) {result['status']}.")


async def dead_requeue(request: web.Request) -> web.StreamResponse:
    services = request.app[DASHBOARD].services
    ids = await _ids(request)
    flt = EventFilter(status="dead") if ids else await _filter(request, "dead")
    n = await services.events.requeue(flt, ids or None)
    if services.delivery is not None:
        services.delivery.notify()
    _audit(request, "dead_letters_requeue", ids=ids, filter=None if ids else _shown(flt), count=n)
    return _result(request, True, f"{n} dead letter(s) requeued.")


async def dead_discard(request: web.Request) -> web.StreamResponse:
    services = request.app[DASHBOARD].services
    ids = await _ids(request)
    if ids:
        n = 0
        for record_id in ids:
            record = await services.events.get(record_id)
            if record is not None and record.status == "dead":
                one = EventFilter(status="dead", provider=record.provider, event_id=record.event_id)
                n += await services.events.purge(one)
        flt = None
    else:
        flt = await _filter(request, "dead")
        n = await services.events.purge(flt)
    _audit(request, "dead_letters_discard", ids=ids, filter=flt and _shown(flt), count=n)
    return _result(request, True, f"{n} dead letter(s) discarded.")


async def _ids(request: web.Request) -> list[int]:
    form = await request.post()
    raw = form.getall("id", [])
    ids = []
    for value in raw:
        text = str(value)
        if len(text) > 19 or not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 2**62:
            raise Rejection("invalid_parameter", "id must be an event number")
        ids.append(int(text))
    return ids[:MAX_LIMIT]


def _named(flt: EventFilter) -> bool:
    return any(v is not None for v in (flt.provider, flt.status, flt.event_id, flt.event_type, flt.since, flt.until,
                                       flt.contains))  # fmt: skip


def _shown(flt: EventFilter) -> dict[str, Any]:
    return {k: str(v) for k in EventFilter.__slots__ if (v := getattr(flt, k)) is not None and k != "limit"}
