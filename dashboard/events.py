"""The events page (stored events and folded rejections, filtered) and one event's detail."""

from __future__ import annotations

import json
import shlex
from typing import Any

from aiohttp import web

from dashboard.auth import fingerprint
from dashboard.filters import RANGES, REJECTION_OUTCOMES, parse_query
from dashboard.state import DASHBOARD, SESSION
from dashboard.templating import render
from gateway.errors import ERROR_STATUS, Rejection
from gateway.events.base import EventRecord
from gateway.outcomes import STATUSES
from gateway.settings.model import Settings


async def events_page(request: web.Request) -> web.StreamResponse:
    services = request.app[DASHBOARD].services
    query = parse_query(request.query, services.settings)
    records = await services.events.list(query.events) if query.events else []
    rejected = []
    if query.rejections is not None:
        rows = await services.events.rejections(query.rejections)
        rejected = [r for r in rows if query.codes is None or r.code in query.codes]
    context = {
        "session": request[SESSION],
        "records": records,
        "rejected": rejected,
        "status_of": lambda code: ERROR_STATUS.get(code, 200),
        "query": query,
        "params": query.params,
        "next_before": records[-1].id if query.events and len(records) == query.events.limit else None,
        "providers": sorted(services.settings.providers),
        "outcomes": (*STATUSES, *REJECTION_OUTCOMES),
        "ranges": RANGES,
        "durable": services.events.durable,
        "store_url_scheme": services.events.url.split(":", 1)[0],
        "max_memory_events": services.settings.events.max_memory_events,
        "queue_mode": services.delivery is not None,
    }
    return render("events.html", request, context)


def _record_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if len(raw) > 19 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**62:
        raise Rejection("invalid_parameter", "an event number is a whole number, like 42")
    return int(raw)


async def load_record(request: web.Request) -> EventRecord:
    record = await request.app[DASHBOARD].services.events.get(_record_id(request))
    if record is None:
        raise Rejection("not_found", "no stored event with this number (it may have expired or been discarded)")
    return record


async def detail_page(request: web.Request) -> web.StreamResponse:
    record = await load_record(request)
    settings = request.app[DASHBOARD].services.settings
    envelope = json.loads(record.event)
    context = {
        "session": request[SESSION],
        "r": record,
        "envelope": envelope,
        "verdict": verdict(settings, record, envelope),
        "body_text": record.body.decode("utf-8", "replace"),
        "curl": as_curl(settings, record),
        "timeline": timeline(record),
        "queue_mode": request.app[DASHBOARD].services.delivery is not None,
    }
    return render("detail.html", request, context)


def verdict(settings: Settings, record: EventRecord, envelope: dict[str, Any]) -> str:
    """Which configured key verified the event, by position and fingerprint (never the key)."""
    spec = settings.providers.get(record.provider)
    if not envelope.get("data", {}).get("verified", True):
        return "not verified: an unsigned provider, or shadow mode forwarding a failed check"
    if spec is None or spec.signature is None:
        return "verified (the provider is no longer configured)"
    i = record.secret_index
    if i is None:
        return "verified (which key matched was not recorded)"
    keys = spec.signature.secrets
    if i < len(keys):
        source = "" if keys[i].label.startswith("#") else f"{keys[i].label}, "
        return f"verified with key #{i} ({source}fingerprint {fingerprint(keys[i])})"
    return f"verified with public key #{i}"


def timeline(record: EventRecord) -> list[dict[str, Any]]:
    """What the store knows of the delivery: received, the attempts so far and the last error,
    then delivered or dead. It keeps the count and the latest outcome, not every attempt."""
    steps: list[dict[str, Any]] = [_step(record.received_at, "received and stored", "ok")]
    if record.attempts:
        kind = "ok" if record.status == "delivered" else "bad" if record.last_error else "wait"
        text = f"{record.attempts} delivery attempt{'s' if record.attempts != 1 else ''}"
        steps.append({"at": None, "what": text, "detail": record.last_error, "kind": kind})
    if record.status == "delivered":
        steps.append(_step(record.delivered_at, "delivered to the upstream", "ok"))
    elif record.status == "dead":
        steps.append({"at": None, "what": "dead letter: gave up", "detail": record.last_error, "kind": "bad"})
    elif record.next_attempt_at is not None:
        steps.append(_step(record.next_attempt_at, f"next attempt ({record.status})", "wait"))
    return steps


def _step(at: Any, what: str, kind: str, detail: str | None = None) -> dict[str, Any]:
    return {"at": at, "what": what, "kind": kind, "detail": detail}


def as_curl(settings: Settings, record: EventRecord) -> str:
    """The request as stored, as a curl command. Credentials and the signature were not stored,
    so the command carries ``[REDACTED]`` where they were: re-sign it to replay it for real."""
    skip = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}
    parts = ["curl", "-sS", "-X", "POST", settings.webhook_url(record.provider)]
    for name, value in record.headers.items():
        if name.lower() not in skip:
            parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", record.body.decode("utf-8", "replace")]
    return " ".join(shlex.quote(p) for p in parts)
