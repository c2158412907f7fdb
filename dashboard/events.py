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
from gateway.events.attempts import Attempt
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
    """The delivery as it happened: received, each try on the wire (time, status, latency, the
    upstream's answer), then delivered, dead or the next attempt's time."""
    steps: list[dict[str, Any]] = [_step(record.received_at, "received and stored", "ok")]
    for a in record.delivery_attempts:
        steps.append(_attempt_step(a))
    if record.attempts and not record.delivery_attempts:  # stored before attempts were recorded
        kind = "ok" if record.status == "delivered" else "bad" if record.last_error else "wait"
        text = f"{record.attempts} delivery attempt{'s' if record.attempts != 1 else ''} (not recorded one by one)"
        steps.append(_step(None, text, kind, record.last_error))
    if record.status == "delivered":
        steps.append(_step(record.delivered_at, "delivered to the upstream", "ok"))
    elif record.status == "dead":
        steps.append(_step(None, "dead letter: gave up", "bad", record.last_error))
    elif record.next_attempt_at is not None:
        steps.append(_step(record.next_attempt_at, f"next attempt ({record.status})", "wait"))
    return steps


def _step(at: Any, what: str, kind: str, detail: str | None = None) -> dict[str, Any]:
    return {"at": at, "what": what, "kind": kind, "detail": detail, "result": None, "latency_ms": None, "response": ""}


def _attempt_step(a: Attempt) -> dict[str, Any]:
    answer = f"HTTP {a.status}" if a.status is not None else a.result.replace("_", " ")
    kind = "ok" if a.result == "success" else "bad"
    step = _step(a.at, f"attempt {a.number}: {answer}", kind, a.error)
    return {**step, "latency_ms": a.latency_ms, "response": a.response, "result": a.result}


def as_curl(settings: Settings, record: EventRecord) -> str:
    """The request as stored, as a curl command. Credentials and the signature were stored as
    ``[REDACTED]``, so the command carries that: re-sign it to replay it for real."""
    skip = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}
    parts = ["curl", "-sS", "-X", "POST", settings.webhook_url(record.provider)]
    for name, value in record.headers.items():
        if name.lower() not in skip:
            parts += ["-H", f"{name}: {value}"]
    parts += ["--data-binary", record.body.decode("utf-8", "replace")]
    return " ".join(shlex.quote(p) for p in parts)
