"""Per-provider time series from the gateway's own Prometheus metrics, for the overview charts.

Every ``interval`` seconds the sampler reads the request counter and latency histogram (the same
objects ``/metrics`` renders) into a ring: 5-second points for the last hour, one point a minute
for the last day. Nothing runs on the webhook route: the counters are already there, the
sampler only reads them. The series start when the process starts (the page says so).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.metrics import LATENCY_BUCKETS, Metrics
from gateway.outcomes import ANSWERED, Outcome

OK_OUTCOMES = ANSWERED | {Outcome.DUPLICATE}  # the provider got a 2xx: the /stats/ success rate's numerator


@dataclass(slots=True)
class Counts:
    """Cumulative counts of one provider at one moment."""

    outcomes: dict[str, float] = field(default_factory=dict)
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(LATENCY_BUCKETS) + 1))

    @property
    def total(self) -> float:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> float:
        return sum(n for outcome, n in self.outcomes.items() if outcome not in OK_OUTCOMES)


Snapshot = dict[str, Counts]


def read(metrics: Metrics) -> Snapshot:
    """The request counter and latency histogram of this process, by provider."""
    snap: Snapshot = {}
    metrics.flush()  # the request path counts cheaply and flushes every FLUSH_INTERVAL: read the latest
    for family in metrics.requests.collect():
        for s in family.samples:
            if s.name.endswith("_total"):
                snap.setdefault(s.labels["provider"], Counts()).outcomes[s.labels["outcome"]] = s.value
    bounds = [*(float(b) for b in LATENCY_BUCKETS), float("inf")]
    for family in metrics.request_seconds.collect():
        for s in family.samples:
            if s.name.endswith("_bucket"):
                i = bounds.index(float(s.labels["le"]))
                snap.setdefault(s.labels["provider"], Counts()).buckets[i] = s.value
    return snap


def quantile(q: float, buckets: Iterable[float]) -> float | None:
    """Prometheus ``histogram_quantile`` over cumulative bucket counts (linear within a bucket)."""
    counts = list(buckets)
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    i = next(i for i, c in enumerate(counts) if c >= rank)
    if i == len(LATENCY_BUCKETS):  # the +Inf bucket: the highest finite bound, as Prometheus does
        return float(LATENCY_BUCKETS[-1])
    lower = float(LATENCY_BUCKETS[i - 1]) if i else 0.0
    below = counts[i - 1] if i else 0.0
    inside = counts[i] - below
    return lower + (float(LATENCY_BUCKETS[i]) - lower) * ((rank - below) / inside if inside else 1.0)


def minus(now: Counts, then: Counts | None) -> Counts:
    if then is None:
        return now
    outcomes = {k: v - then.outcomes.get(k, 0.0) for k, v in now.outcomes.items()}
    return Counts(outcomes, [a - b for a, b in zip(now.buckets, then.buckets, strict=True)])


class Sampler:
    def __init__(self, metrics: Metrics, interval: float = 5.0) -> None:
        self.metrics = metrics
        self.interval = interval
        self.started = time.time()
        self.fine: deque[tuple[float, Snapshot]] = deque(maxlen=int(3600 / interval) + 2)
        self.coarse: deque[tuple[float, Snapshot]] = deque(maxlen=24 * 60 + 2)
        self.last_error: dict[str, tuple[float, str]] = {}
        self.sample()

    def sample(self, now: float | None = None, keep: bool = True) -> Snapshot:
        """Read the metrics now; ``keep`` adds the reading to the rings (the timer's readings do;
        a page's own reading does not, so page views never thin out the hour of history)."""
        now = time.time() if now is None else now
        snap = read(self.metrics)
        if self.fine:
            self._note_errors(now, *self.fine[-1], snap)
        if not keep:
            return snap
        self.fine.append((now, snap))
        if not self.coarse or now - self.coarse[-1][0] >= 60:
            self.coarse.append((now, snap))
        return snap

    def _note_errors(self, now: float, then: float, before: Snapshot, after: Snapshot) -> None:
        for provider, counts in after.items():
            if self.last_error.get(provider, (0.0, ""))[0] > then:
                continue  # seen by an earlier reading since the last kept one: keep its time
            old = before.get(provider, Counts()).outcomes
            grown = [o for o, n in counts.outcomes.items() if o not in OK_OUTCOMES and n > old.get(o, 0.0)]
            if grown:
                self.last_error[provider] = (now, max(grown, key=lambda o: counts.outcomes[o] - old.get(o, 0.0)))

    def at(self, when: float) -> Snapshot | None:
        """The latest snapshot taken at or before ``when`` (None before the first)."""
        ring = self.fine if self.fine and self.fine[0][0] <= when else self.coarse
        times = [t for t, _ in ring]
        i = bisect.bisect_right(times, when)
        return ring[i - 1][1] if i else None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def series(self, window: str, now: float | None = None) -> dict[str, Any]:
        """Per-provider points over the last hour (one a minute) or day (one per 15 minutes):
        requests a minute, errors a minute and p95 latency in milliseconds."""
        now = time.time() if now is None else now
        span, step = (3600, 60) if window == "hour" else (86400, 900)
        current = self.sample(now, keep=False)
        edges = [now - span + step * i for i in range(span // step + 1)]
        snaps = [self.at(t) for t in edges[:-1]] + [current]
        out: dict[str, Any] = {"t": [round(t) for t in edges[1:]], "since": self.started, "step": step, "providers": {}}
        for provider in sorted(current):
            rows: dict[str, list[float | None]] = {"rate": [], "errors": [], "p95_ms": []}
            for before, after in itertools.pairwise(snaps):
                if after is None:  # before the process started: no data, not zero
                    for row in rows.values():
                        row.append(None)
                    continue
                # No snapshot before: the interval holds the start, when every counter was 0.
                d = minus(after.get(provider, Counts()), before.get(provider) if before else None)
                p95 = quantile(0.95, d.buckets)
                rows["rate"].append(round(d.total * 60 / step, 3))
                rows["errors"].append(round(d.errors * 60 / step, 3))
                rows["p95_ms"].append(round(p95 * 1000, 3) if p95 is not None else None)
            out["providers"][provider] = rows
        return out
