"""Per-day counts of answered webhooks, for ``/stats/?days=N``: real counts, kept in memory.

They start when the process starts (the response says so in ``since``); the PostgreSQL event
store answers the same question durably when it is configured.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

SUCCESS = ("forwarded", "queued", "handshake")
MAX_DAYS = 366


class StatsLedger:
    def __init__(self) -> None:
        self.since = time.time()
        self._counts: dict[tuple[date, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[date, str], float] = defaultdict(float)

    def record(self, provider: str, outcome: str, seconds: float) -> None:
        today = datetime.now(UTC).date()
        self._counts[(today, provider, outcome)] += 1
        self._latency[(today, provider)] += seconds
        if len(self._counts) > 50_000:
            self._trim(today)

    def _trim(self, today: date) -> None:
        cutoff = today - timedelta(days=MAX_DAYS)
        self._counts = defaultdict(int, {k: v for k, v in self._counts.items() if k[0] > cutoff})
        self._latency = defaultdict(float, {k: v for k, v in self._latency.items() if k[0] > cutoff})

    def summary(self, days: int) -> dict[str, Any]:
        """Totals, per provider and per day, over the last ``days`` UTC days (today included)."""
        today = datetime.now(UTC).date()
        first = today - timedelta(days=days - 1)
        providers: dict[str, dict[str, Any]] = {}
        daily = {first + timedelta(days=i): _empty() for i in range(days)}
        totals = _empty()
        for (day, provider, outcome), n in self._counts.items():
            if day < first:
                continue
            row = providers.setdefault(provider, _empty())
            for bucket in (row, daily[day], totals):
                _add(bucket, outcome, n)
        for (day, provider), seconds in self._latency.items():
            if day >= first:
                for bucket in (providers[provider], daily[day], totals):
                    bucket["_seconds"] += seconds
        return {
            "days": days,
            "from": first.isoformat(),
            "to": today.isoformat(),
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
            "source": "memory",
            "totals": _finish(totals),
            "providers": {name: _finish(row) for name, row in sorted(providers.items())},
            "daily": [{"date": d.isoformat(), **_finish(row)} for d, row in daily.items()],
        }


def _empty() -> dict[str, Any]:
    return {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "outcomes": {}, "_seconds": 0.0}


def _add(bucket: dict[str, Any], outcome: str, n: int) -> None:
    bucket["received"] += n
    key = "accepted" if outcome in SUCCESS else "duplicates" if outcome == "duplicate" else "rejected"
    bucket[key] += n
    bucket["outcomes"][outcome] = bucket["outcomes"].get(outcome, 0) + n


def _finish(bucket: dict[str, Any]) -> dict[str, Any]:
    seconds = bucket.pop("_seconds")
    received = bucket["received"]
    decided = bucket["accepted"] + bucket["duplicates"]
    bucket["success_rate"] = round(decided / received, 4) if received else None
    bucket["avg_latency_ms"] = round(1000 * seconds / received, 3) if received else None
    return bucket
