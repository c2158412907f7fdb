"""Per-day counts of answered webhooks, for ``/stats/?days=N``: real counts, never estimates.

``StatsLedger`` keeps them in memory from process start (the response says so in ``since``);
the PostgreSQL event store computes the same summary from its tables with :func:`summarize`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.outcomes import ANSWERED, Outcome

MAX_DAYS = 366


class StatsLedger:
    def __init__(self) -> None:
        self.since = time.time()
        self._day_number = -1
        self._today = datetime.now(UTC).date()
        self._counts: dict[tuple[date, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[date, str], float] = defaultdict(float)

    def record(self, provider: str, outcome: str, seconds: float) -> None:
        day = int(time.time() // 86400)  # the UTC day number: cheaper than a datetime per request
        if day != self._day_number:
            self._day_number, self._today = day, datetime.now(UTC).date()
        today = self._today
        self._counts[(today, provider, outcome)] += 1
        self._latency[(today, provider)] += seconds
        if len(self._counts) > 50_000:
            cutoff = today - timedelta(days=MAX_DAYS)
            self._counts = defaultdict(int, {k: v for k, v in self._counts.items() if k[0] > cutoff})
            self._latency = defaultdict(float, {k: v for k, v in self._latency.items() if k[0] > cutoff})

    def summary(self, days: int) -> dict[str, Any]:
        """Totals, per provider and per day, over the last ``days`` UTC days (today included)."""
        since = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        rows = ((day, provider, outcome, n) for (day, provider, outcome), n in self._counts.items())
        latency = ((day, provider, s) for (day, provider), s in self._latency.items())
        return summarize(rows, days, source="memory", since=since, latency=latency)


def summarize(
    rows: Iterable[tuple[date, str, str, int]],
    days: int,
    *,
    source: str,
    since: str | None,
    latency: Iterable[tuple[date, str, float]] = (),
) -> dict[str, Any]:
    """Fold ``(day, provider, outcome, count)`` rows into the ``/stats/`` response body."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    providers: dict[str, dict[str, Any]] = {}
    daily = {first + timedelta(days=i): _empty() for i in range(days)}
    totals = _empty()
    for day, provider, outcome, n in rows:
        if first <= day <= today:
            for bucket in (providers.setdefault(provider, _empty()), daily[day], totals):
                _add(bucket, outcome, n)
    timed = False
    for day, provider, seconds in latency:
        if first <= day <= today and provider in providers:
            timed = True
            for bucket in (providers[provider], daily[day], totals):
                bucket["_seconds"] += seconds
    return {
        "days": days,
        "from": first.isoformat(),
        "to": today.isoformat(),
        "since": since,
        "source": source,
        "totals": _finish(totals, timed),
        "providers": {name: _finish(row, timed) for name, row in sorted(providers.items())},
        "daily": [{"date": d.isoformat(), **_finish(row, timed)} for d, row in daily.items()],
    }


def _empty() -> dict[str, Any]:
    return {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "outcomes": {}, "_seconds": 0.0}


def _add(bucket: dict[str, Any], outcome: str, n: int) -> None:
    bucket["received"] += n
    key = "accepted" if outcome in ANSWERED else "duplicates" if outcome == Outcome.DUPLICATE else "rejected"
    bucket[key] += n
    outcome = str(outcome)  # a plain str: an Outcome member is no JSON object key to orjson
    bucket["outcomes"][outcome] = bucket["outcomes"].get(outcome, 0) + n


def _finish(bucket: dict[str, Any], timed: bool) -> dict[str, Any]:
    seconds = bucket.pop("_seconds")
    received = bucket["received"]
    decided = bucket["accepted"] + bucket["duplicates"]
    bucket["success_rate"] = round(decided / received, 4) if received else None
    bucket["avg_latency_ms"] = round(1000 * seconds / received, 3) if received and timed else None
    return bucket
