"""Management API over the event store: list, show, replay, bulk replay, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.app_state import Services
from gateway.errors import Rejection
from gateway.escape import storable
from gateway.events.base import EventFilter, EventRecord
from gateway.handlers.auth import managed
from gateway.outcomes import STATUSES, EventStatus, Outcome
from gateway.responses import json_response
from gateway.tracing import new_traceparent

MAX_LIMIT = 500
FILTER_KEYS = frozenset({"provider", "status", "event_id", "event_type", "since", "until", "limit", "before_id"})


def parse_filter(params: Any, status: str | None = None) -> EventFilter:
    def text(name: str) -> str | None:
        value = params.get(name)
        if value in (None, ""):
            return None
        if storable(str(value)) != str(value):  # NUL or undecodable bytes: no stored text matches
            raise Rejection("invalid_parameter", f"{name} must be text without NUL or invalid UTF-8")
        return str(value)

    chosen = status or text("status")
    if chosen is not None and chosen not in STATUSES:
        raise Rejection("invalid_parameter", f"status must be one of {', '.join(STATUSES)}")
    return EventFilter(
        provider=text("provider"),
        status=chosen,
        event_id=text("event_id"),
        event_type=text("event_type"),
        since=_time(text("since"), "since"),
        until=_time(text("until"), "until"),
        limit=_int(text("limit") or "100", "limit", 1, MAX_LIMIT),
        before_id=_int(text("before_id"), "before_id", 1, 2**62) if text("before_id") else None,
    )


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejection("invalid_parameter", f"{name} must be an ISO 8601 time with a zone") from None
    if parsed.tzinfo is None:
        raise Rejection("invalid_parameter", f"{name} must include a time zone (e.g. Z)")
    return parsed


def _int(value: str | None, name: str, low: int, high: int) -> int:
    if value is None or len(value) > 19 or not value.isascii() or not value.isdigit() or not low <= int(value) <= high:
        raise Rejection("invalid_parameter", f"{name} must be a whole number from {low} to {high}")
    return int(value)


def detail(record: EventRecord) -> dict[str, Any]:
    try:
        body: Any = {"text": record.body.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"base64": base64.b64encode(record.body).decode()}
    return {**record.summary(), "headers": record.headers, "body": body, "event": json.loads(record.event)}


def _page(records: list[EventRecord]) -> dict[str, Any]:
    next_before_id = records[-1].id if records else None  # null once a page comes back empty
    return {"success": True, "events": [r.summary() for r in records], "next_before_id": next_before_id}


@managed
async def list_events(request: web.Request, services: Services) -> web.Response:
    return json_response(200, _page(await services.events.list(parse_filter(request.query))))


@managed
async def show_event(request: web.Request, services: Services) -> web.Response:
    record = await services.events.get(_int(request.match_info["id"], "id", 1, 2**62))
    if record is None:
        raise Rejection("not_found", "no stored event with this id")
    return json_response(200, {"success": True, "event": detail(record)})


@managed
async def replay_event(request: web.Request, services: Services) -> web.Response:
    record_id = _int(request.match_info["id"], "id", 1, 2**62)
    record = await services.events.get(record_id)
    if record is None:
        raise Rejection("not_found", "no stored event with this id")
    if services.delivery is not None:
        n = await services.events.requeue(EventFilter(limit=1), [record_id])
        services.delivery.notify()
        return json_response(202, {"success": True, "status": Outcome.QUEUED if n else "in_flight", "id": record_id})
    await services.forwarder.send(record.provider, record.event, new_traceparent())
    return json_response(200, {"success": True, "status": Outcome.FORWARDED, "id": record_id})


@managed
async def replay_events(request: web.Request, services: Services) -> web.Response:
    """Bulk replay by filter (JSON body with the list filters). Queue mode requeues them all;
    sync mode delivers up to ``limit`` now, in order, stopping at the first failure."""
    try:
        params = await request.json() if request.can_read_body else {}
    except ValueError:
        raise Rejection("invalid_json", "the body must be a JSON object of filters") from None
    if not isinstance(params, dict):
        raise Rejection("invalid_json", "the body must be a JSON object of filters")
    unknown = set(params) - FILTER_KEYS
    if unknown:
        raise Rejection(
            "invalid_parameter", f"unknown filter {sorted(unknown)[0]!r}; known: {', '.join(sorted(FILTER_KEYS))}"
        )
    flt = parse_filter({k: str(v) for k, v in params.items() if v is not None})
    named = (flt.provider, flt.status, flt.event_id, flt.event_type, flt.since, flt.until)
    if all(value is None for value in named):  # a limit or a cursor alone selects everything
        raise Rejection(
            "invalid_parameter",
            "name at least one filter (provider, status, event_id, event_type, since, until): "
            "replaying everything is refused",
        )
    if services.delivery is not None:
        n = await services.events.requeue(flt)
        services.delivery.notify()
        return json_response(202, {"success": True, "status": Outcome.QUEUED, "count": n})
    delivered = 0
    for record in reversed(await services.events.list(flt)):
        await services.forwarder.send(record.provider, record.event, new_traceparent())
        delivered += 1
    return json_response(200, {"success": True, "status": Outcome.FORWARDED, "count": delivered})


@managed
async def list_dead(request: web.Request, services: Services) -> web.Response:
    return json_response(200, _page(await services.events.list(parse_filter(request.query, EventStatus.DEAD))))


@managed
async def purge_dead(request: web.Request, services: Services) -> web.Response:
    n = await services.events.purge(parse_filter(request.query, EventStatus.DEAD))
    return json_response(200, {"success": True, "purged": n})
