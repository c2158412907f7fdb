"""What the overview shows, computed from the services the management API reads.

Provider health comes from the request metrics of this process (the numbers ``/metrics``
exports), store health from the health report, queue and dead letters from the event store.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from dashboard.auth import fingerprint
from dashboard.sampler import Counts, Sampler, minus, quantile
from dashboard.state import Dashboard
from gateway.app_state import Services
from gateway.commands.rotation import Usage, load_usage
from gateway.errors import ERROR_STATUS, StoreError
from gateway.handlers.management import health_report, provider_rows

USAGE_TTL = 60.0


async def key_usage(dash: Dashboard) -> Usage | None:
    """When each key last verified a stored event (PostgreSQL only), read at most once a minute:
    the rotation age shown beside each fingerprint, as ``webhook-gateway check`` reports it."""
    events = dash.services.settings.events
    if not events.url.startswith(("postgresql://", "postgres://")):
        return None
    read_at, usage = dash.key_usage
    if time.monotonic() - read_at > USAGE_TTL:
        usage = await load_usage(events.url, timeout=events.timeout)
        dash.key_usage = (time.monotonic(), usage)
    return usage if isinstance(usage, Usage) else None


def provider_cards(
    services: Services, sampler: Sampler, usage: Usage | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    current = sampler.sample(now, keep=False)
    minute_ago = sampler.at(now - 60)
    cards = []
    for row in provider_rows(services):
        name = row["name"]
        counts = current.get(name, Counts())
        last_minute = minus(counts, minute_ago.get(name) if minute_ago else None)
        p95 = quantile(0.95, counts.buckets)
        error = sampler.last_error.get(name)
        cards.append(
            {
                **row,
                "requests": int(counts.total),
                "errors": int(counts.errors),
                "success_rate": (counts.total - counts.errors) / counts.total if counts.total else None,
                "per_minute": int(last_minute.total),
                "p95_ms": p95 * 1000 if p95 is not None else None,
                "last_event_at": services.last_event.get(name),
                "last_error": {"at": error[0], "code": error[1]} if error else None,
                "keys": key_rows(services, name, usage),
            }
        )
    return cards


def key_rows(services: Services, name: str, usage: Usage | None = None) -> list[dict[str, Any]]:
    """Fingerprints of the provider's keys, never the keys: which one is current, which ones old."""
    sig = services.settings.providers[name].signature
    if sig is None:
        return []
    matches = _secret_matches(services, name)
    rows = [{"fingerprint": fingerprint(k), "label": k.label} for k in sig.secrets]
    rows += [{"fingerprint": "public key", "label": k.label} for k in sig.public_keys]
    last = usage.last if usage else {}
    return [
        {**row, "index": i, "matches": matches.get(str(i), 0), "last_matched": last.get((name, i))}
        for i, row in enumerate(rows)
    ]


def _secret_matches(services: Services, name: str) -> dict[str, int]:
    """Verified requests per key position since start (the rotation metric): an old key at 0 can go."""
    out = {}
    services.metrics.flush()  # the latest counts (see Metrics.child)
    for family in services.metrics.secret_matches.collect():
        for s in family.samples:
            if s.name.endswith("_total") and s.labels["provider"] == name:
                out[s.labels["secret"]] = int(s.value)
    return out


def rejection_counts(sampler: Sampler) -> list[dict[str, Any]]:
    """Answers that were not a 2xx, by code, since this process started (from the metrics)."""
    totals: dict[str, float] = {}
    for counts in sampler.sample(keep=False).values():
        for outcome, n in counts.outcomes.items():
            if outcome in ERROR_STATUS and n:
                totals[outcome] = totals.get(outcome, 0.0) + n
    return [
        {"code": code, "status": ERROR_STATUS[code], "count": int(n)}
        for code, n in sorted(totals.items(), key=lambda kv: -kv[1])
    ]


async def store_panel(services: Services) -> dict[str, Any]:
    health = await health_report(services)
    try:
        backlog = await services.events.backlog()  # what /metrics reports as the outbox, too
    except StoreError:
        backlog = None
    queue = {"counts": backlog.counts} if backlog else None
    oldest = backlog.oldest_pending if backlog else None
    return {
        "health": health,
        "queue": queue,
        "oldest_age": (datetime.now(UTC) - oldest).total_seconds() if oldest else None,
        "tunnel": health.get("tunnel"),
    }
