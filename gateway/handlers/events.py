"""Management API over the event store: list, show, replay, bulk replay, dead letters."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.app_state import Services
from gateway.errors import Rejection
from gateway.escape import storable
from gateway.events.base import EventFilter, EventRecord, in_utc
from gateway.handlers.auth import managed
from gateway.outcomes import STATUSES, EventStatus
from gateway.replay import replay_matching, replay_one
from gateway.responses import json_response

MAX_LIMIT = 500
FILTER_KEYS = frozenset({"provider", "status", "event_id", "event_type", "since", "until", "limit", "before_id"})


def parse_filter(params: Any, status: str | None = None) -> EventFilter:
    """The list filters. An empty text filter (``?provider=``) is no filter; an empty typed one
    (``?limit=``, ``?status=``, ``?since=``) is a 400, as any other value that is not its type."""

    def text(name: str) -> str | None:
        value = params.get(name)
        if value in (None, ""):
            return None
        if storable(str(value)) != str(value):  # NUL or undecodable bytes: no stored text matches
            raise Rejection("invalid_parameter", f"{name} must be text without NUL or invalid UTF-8")
        return str(value)

    def raw(name: str) -> str | None:
        value = params.get(name)
        return None if value is None else str(value)

    chosen = status or raw("status")
    if chosen is not None and chosen not in STATUSES:
        raise Rejection("invalid_parameter", f"status must be one of {', '.join(STATUSES)}")
    return EventFilter(
        provider=text("provider"),
        status=chosen,
        event_id=text("event_id"),
        event_type=text("event_type"),
        since=_time(params.get("since"), "since"),
        until=_time(params.get("until"), "until"),
        limit=_int(raw("limit"), "limit", 1, MAX_LIMIT) if raw("limit") is not None else 100,
        before_id=_int(raw("before_id"), "before_id", 1, 2**62) if raw("before_id") is not None else None,
    )


def _time(value: object, name: str) -> datetime | None:
    """An ISO 8601 time with a zone; absent is None, but present and empty is an error (a time
    filter the client meant to set is never silently dropped)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Rejection("invalid_parameter", f"{name} must be an ISO 8601 time with a zone") from None
    if parsed.tzinfo is None:
        raise Rejection("invalid_parameter", f"{name} must include a time zone (e.g. Z)")
    return in_utc(parsed, name)


#: A whole number in a query string; ``155.0`` is one too (JSON Schema's ``integer`` says so).
_WHOLE = re.compile(r"([0-9]{1,19})(?:\.0+)?")


def _int(value: str | None, name: str, low: int, high: int) -> int:
    whole = _WHOLE.fullmatch(value) if value is not None and len(value) <= 40 else None
    if whole is None or not low <= int(whole[1]) <= high:
        raise Rejection("invalid_parameter", f"{name} must be a whole number from {low} to {high}")
    return int(whole[1])


def _body_filters(params: dict[str, Any]) -> dict[str, str]:
    """Bulk replay's JSON filters as text: strings, never empty (a filter meant is never dropped
    silently), and for ``limit``/``before_id`` also whole numbers."""
    for key, value in params.items():
        whole = type(value) is int or (type(value) is float and value.is_integer())  # float(10**400) overflows
        if key in ("limit", "before_id") and whole:
            params = {**params, key: int(value)}  # 64.0 is the integer 64 in JSON
            continue
        if not isinstance(value, str) or not value:
            kind = "a whole number or a digit string" if key in ("limit", "before_id") else "a non-empty string"
            raise Rejection("invalid_parameter", f"{key} must be {kind}")
    return {key: str(value) for key, value in params.items()}


def detail(record: EventRecord) -> dict[str, Any]:
    try:
        body: Any = {"text": record.body.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"base64": base64.b64encode(record.body).decode()}
    return {
        **record.summary(),
        "headers": record.headers,
        "body": body,
        "event": json.loads(record.event),
        "delivery_attempts": [a.as_json() for a in record.delivery_attempts],
    }


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
    result = await replay_one(services, _int(request.match_info["id"], "id", 1, 2**62))
    if result is None:
        raise Rejection("not_found", "no stored event with this id")
    return json_response(202 if services.delivery is not None else 200, {"success": True, **result})


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
    flt = parse_filter(_body_filters(params))
    named = (flt.provider, flt.status, flt.event_id, flt.event_type, flt.since, flt.until)
    if all(value is None for value in named):  # a limit or a cursor alone selects everything
        raise Rejection(
            "invalid_parameter",
            "name at least one filter (provider, status, event_id, event_type, since, until): "
            "replaying everything is refused",
        )
    result = await replay_matching(services, flt)
    return json_response(202 if services.delivery is not None else 200, {"success": True, **result})


@managed
async def list_dead(request: web.Request, services: Services) -> web.Response:
    return json_response(200, _page(await services.events.list(parse_filter(request.query, EventStatus.DEAD))))


@managed
async def purge_dead(request: web.Request, services: Services) -> web.Response:
    """Deletes what matches, all dead letters without filters: so a filter that would not apply
    (misspelt, empty, or ``limit``/``status``) is a 400, never a wider delete than meant."""
    wrong = sorted(set(request.query) - FILTER_KEYS | set(request.query) & {"limit", "status"})
    if wrong:
        known = ", ".join(sorted(FILTER_KEYS - {"limit", "status"}))
        raise Rejection("invalid_parameter", f"purge does not take {wrong[0]!r}; its filters: {known}")
    empty = sorted(key for key, value in request.query.items() if value == "")
    if empty:
        raise Rejection("invalid_parameter", f"{empty[0]} is empty: name a value, or leave the filter out")
    n = await services.events.purge(parse_filter(request.query, EventStatus.DEAD))
    return json_response(200, {"success": True, "purged": n})
