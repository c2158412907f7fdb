"""The events page's filters: read from the query string, checked, and turned into store filters.

Every malformed value is a ``Rejection`` (a clear 400), never a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.errors import ERROR_STATUS, Rejection
from gateway.events.base import MAX_CONTAINS_DEPTH, EventFilter, in_utc, json_depth
from gateway.outcomes import STATUSES
from gateway.settings.model import Settings

PAGE = 50
RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
#: Outcomes the store folds into per-minute counts (rejections, duplicates, handshakes such as
#: Slack's url_verification), not stored events. "rejected" selects the error codes.
NOT_ERRORS = ("duplicate", "handshake")
REJECTION_OUTCOMES = ("rejected", *NOT_ERRORS, *sorted(c for c in ERROR_STATUS if c != "not_found"))
KEYS = ("provider", "event_type", "outcome", "code", "range", "since", "until", "event_id", "q", "before")


@dataclass(frozen=True, slots=True)
class Query:
    """What the page asked for: which events, and which rejection codes (None: all)."""

    events: EventFilter | None  # None: the filter excludes stored events (e.g. outcome=rejected)
    rejections: EventFilter | None  # None: the filter excludes rejections
    codes: frozenset[str] | None
    params: dict[str, str]

    def without(self, *names: str) -> dict[str, str]:
        return {k: v for k, v in self.params.items() if k not in names}


def parse_query(params: Any, settings: Settings) -> Query:
    raw = {k: str(params[k]).strip() for k in KEYS if str(params.get(k, "")).strip()}
    for key, value in raw.items():
        if len(value) > 2000 or not value.isprintable():
            raise Rejection("invalid_parameter", f"{key} is too long or holds control characters")
    provider = raw.get("provider")
    if provider is not None and provider not in settings.providers:
        raise Rejection("invalid_parameter", f"unknown provider {provider!r}")
    since, until = _range(raw)
    base = EventFilter(
        provider=provider, event_type=raw.get("event_type"), event_id=raw.get("event_id"), since=since, until=until,
        limit=PAGE, before_id=_before(raw.get("before")), contains=_contains(raw.get("q")),
    )  # fmt: skip
    outcome, code = raw.get("outcome"), _code(raw.get("code"))
    if outcome is not None and outcome not in STATUSES and outcome not in REJECTION_OUTCOMES:
        raise Rejection("invalid_parameter", f"unknown outcome {outcome!r}")
    events: EventFilter | None = replace(base, status=outcome if outcome in STATUSES else None)
    if outcome in REJECTION_OUTCOMES or (code is not None and code not in (200, 202)):
        events = None
    codes = _codes(outcome, code)
    searches_events = base.event_id or base.event_type or base.contains is not None or base.before_id
    rejections = None
    if (outcome is None or outcome in REJECTION_OUTCOMES) and not searches_events and codes != frozenset():
        rejections = EventFilter(provider=provider, since=since, until=until, limit=200)
    return Query(events, rejections, codes, raw)


def _codes(outcome: str | None, code: int | None) -> frozenset[str] | None:
    names = set(REJECTION_OUTCOMES[1:])
    if outcome == "rejected":
        names -= set(NOT_ERRORS)
    elif outcome is not None:
        names &= {outcome}
    if code is not None:
        names &= {c for c in names if ERROR_STATUS.get(c, 200) == code}
    return None if names == set(REJECTION_OUTCOMES[1:]) else frozenset(names)


def _range(raw: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    chosen = raw.get("range")
    if chosen is not None:
        if chosen not in RANGES:
            raise Rejection("invalid_parameter", f"range must be one of {', '.join(RANGES)}")
        return datetime.now(UTC) - RANGES[chosen], None
    since, until = _time(raw.get("since"), "since"), _time(raw.get("until"), "until")
    if since and until and since >= until:
        raise Rejection("invalid_parameter", "since must be before until")
    return since, until


def _time(value: str | None, name: str) -> datetime | None:
    """ISO 8601; without a zone (a browser's datetime-local field) the time is UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Rejection("invalid_parameter", f"{name} must be a time like 2026-12-03T08:00 (UTC)") from None
    return in_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), name)


def _before(value: str | None) -> int | None:
    if value is None:
        return None
    if len(value) > 19 or not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 2**62:
        raise Rejection("invalid_parameter", "before must be an event number")
    return int(value)


def _code(value: str | None) -> int | None:
    if value is None:
        return None
    if len(value) != 3 or not value.isascii() or not value.isdigit() or not 100 <= int(value) <= 599:
        raise Rejection("invalid_parameter", "code must be an HTTP status such as 401")
    return int(value)


def _contains(value: str | None) -> Any:
    if value is None:
        return None
    too_deep = Rejection("invalid_parameter", f"q nests deeper than {MAX_CONTAINS_DEPTH} levels")
    try:
        doc = json.loads(value)
    except RecursionError:  # the parser gives up near 1000 levels: far past the bound anyway
        raise too_deep from None
    except ValueError:
        raise Rejection("invalid_parameter", 'q must be JSON, e.g. {"type": "payment_intent.succeeded"}') from None
    if not isinstance(doc, dict | list):
        raise Rejection("invalid_parameter", "q must be a JSON object or array (matched by containment)")
    if json_depth(doc) > MAX_CONTAINS_DEPTH:
        raise too_deep
    return doc
