"""Prometheus metrics. One prefix, Prometheus naming; the list lives in docs/metrics.md.

Label values are bounded: ``provider`` is a configured provider name (or ``unknown``),
``outcome`` a code from ``gateway.errors.ERROR_STATUS`` or a success outcome, ``secret`` a
position in the provider's secret list. Nothing from a request becomes a label as sent.
"""

from __future__ import annotations

import asyncio
import os
import platform
from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from gateway import __version__

if TYPE_CHECKING:
    from gateway.settings.model import Settings

PREFIX = "webhook_gateway"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SKEW_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """Every metric the gateway exports, on a registry of its own (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests_total", "Webhook requests answered, by provider and outcome.",
            ["provider", "outcome"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time from request to answer, by provider.",
            ["provider"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.forward_seconds = Histogram(
            f"{PREFIX}_forward_duration_seconds", "Upstream delivery time, by provider and result.",
            ["provider", "result"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.dedup_hits = Counter(
            f"{PREFIX}_dedup_hits_total", "Verified copies of an event already accepted.", ["provider"], registry=r
        )
        self.content_replays = Counter(
            f"{PREFIX}_signed_content_replays_total",
            "Verified requests whose signed content was accepted before under another event id.",
            ["provider"], registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited_total", "Requests refused by a rate limit, by scope (source or provider).",
            ["provider", "scope"], registry=r,
        )  # fmt: skip
        self.secret_matches = Counter(
            f"{PREFIX}_signature_secret_matches_total",
            "Verified requests by the position of the secret that matched (0 = first): for rotation.",
            ["provider", "secret"], registry=r,
        )  # fmt: skip
        self.shadow_rejections = Counter(
            f"{PREFIX}_shadow_rejections_total",
            "Requests of shadow-mode providers that failed verification and were forwarded anyway, by code.",
            ["provider", "code"], registry=r,
        )  # fmt: skip
        self.skew = Histogram(
            f"{PREFIX}_timestamp_skew_seconds", "Distance between the signed timestamp and the gateway clock.",
            ["provider"], buckets=SKEW_BUCKETS, registry=r,
        )  # fmt: skip
        self.last_event = Gauge(
            f"{PREFIX}_last_event_timestamp_seconds", "Unix time of the last accepted event, by provider.",
            ["provider"], multiprocess_mode="max", registry=r,
        )  # fmt: skip
        self.store_errors = Counter(
            f"{PREFIX}_store_errors_total", "Store calls that failed, by concern and the policy applied.",
            ["concern", "policy"], registry=r,
        )  # fmt: skip
        self.config_reloads = Counter(
            f"{PREFIX}_config_reloads_total", "Config reloads by result (ok, error: the old config kept serving).",
            ["result"], registry=r,
        )  # fmt: skip
        self.queue_deliveries = Counter(
            f"{PREFIX}_queue_deliveries_total",
            "Queue-mode delivery attempts by result (delivered, retry, dead, released).",
            ["provider", "result"], registry=r,
        )  # fmt: skip
        self.connections_dropped = Counter(
            f"{PREFIX}_connections_dropped_total",
            "Client connections the gateway closed, by reason (header_timeout, connection_limit, bad_request).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.audit_lost = Counter(
            f"{PREFIX}_audit_rows_lost_total",
            "Audit rows of forwarded events (sync mode) that could not be written, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight_requests", "Webhook requests being processed.", multiprocess_mode="livesum", registry=r
        )
        # Read from the stores when /metrics is scraped (gateway.handlers.ops): every worker and
        # replica sees the same outbox, so the most recent reading is the value.
        self.queue_events = Gauge(
            f"{PREFIX}_queue_events", "Events in the event store's outbox by status (queued, delivering, dead).",
            ["status"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.queue_oldest_age = Gauge(
            f"{PREFIX}_queue_oldest_pending_age_seconds",
            "Age of the oldest event still waiting for delivery (queued or delivering); 0 when none waits.",
            multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.store_up = Gauge(
            f"{PREFIX}_store_up", "1 when the store (state or events) answered its health check at the last scrape.",
            ["store"], multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.build_info = Gauge(
            f"{PREFIX}_build_info", "Always 1; the labels say which gateway and Python run.",
            ["version", "python_version"], multiprocess_mode="max", registry=r,
        )  # fmt: skip
        self.build_info.labels(__version__, platform.python_version()).set(1)
        # process_* and python_* of this process (under --workers: see render()).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.init_series((), queue=False)

        self.in_flight_now = 0  # what the request path counts; flush() sets the gauge to it
        # Under --workers N another worker may answer the next scrape: flush once per loop turn.
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._flush_pending = False

    def init_settings(self, settings: Settings) -> None:
        """``init_series`` for the providers, upstream mode and store policies of ``settings``."""
        self.init_series(settings.providers, queue=settings.upstream.mode == "queue")
        self.store_errors.labels("dedup", settings.state.dedup_on_error)
        self.store_errors.labels("rate_limit", settings.state.rate_limit_on_error)

    def init_series(self, providers: Iterable[str], *, queue: bool) -> None:
        """Create the labelled series that alerts and panels read, at 0, before any event.

        A counter's first sample must be 0: ``increase()`` over a series that starts at 1 reads 0,
        so an alert on the first dead letter or the first failed reload would never fire. Called
        at start and after every reload (new providers); creating an existing child is a no-op.
        """
        for result in ("ok", "error"):
            self.config_reloads.labels(result)
        for status in ("queued", "delivering", "dead"):
            self.queue_events.labels(status)
        for store in ("state", "events"):
            self.store_up.labels(store)
        for reason in ("unavailable", "refused", "backlog", "error"):  # docs/metrics.md, "reason"
            self.audit_lost.labels(reason)
        for reason in ("header_timeout", "connection_limit", "bad_request"):
            self.connections_dropped.labels(reason)
        for provider in providers:
            self._init_provider(provider, queue)

    def _init_provider(self, provider: str, queue: bool) -> None:
        accepted = "queued" if queue else "forwarded"
        for outcome in (accepted, "duplicate", "invalid_signature", "missing_signature", "stale_timestamp"):
            self.requests.labels(provider, outcome)
        for scope in ("source", "provider"):
            self.rate_limited.labels(provider, scope)
        self.dedup_hits.labels(provider)
        self.content_replays.labels(provider)
        self.request_seconds.labels(provider)
        self.forward_seconds.labels(provider, "success")
        self.secret_matches.labels(provider, "0")
        if queue:
            for result in ("delivered", "retry", "dead"):
                self.queue_deliveries.labels(provider, result)

    def child(self, metric: Any, *labels: str) -> Any:
        """A cheap stand-in for ``metric.labels(*labels)`` (same ``inc``/``observe``/``set``).

        prometheus_client takes a lock for every update and walks a histogram's buckets in
        Python; the request path instead adds to plain numbers here, and :meth:`flush` moves them
        into the real metrics: before every scrape (:meth:`render`), every ``FLUSH_INTERVAL``
        seconds (``gateway.app``), and under ``--workers N`` at the end of the event-loop turn
        in which a webhook finished (``shared``: another worker may serve the next scrape). The
        exposition, its names and labels, and the multiprocess files stay prometheus_client's."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _tally(metric.labels(*labels))
        return found

    def flush_soon(self) -> None:
        """Flush at the end of this event-loop turn (once, however many requests finished in it)."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self.flush()

    def flush(self) -> None:
        """Move what the request path counted into the prometheus metrics."""
        self.in_flight.set(self.in_flight_now)
        for tally in self._children.values():
            tally.flush()

    def render(self) -> bytes:
        """The exposition text; under ``--workers N`` the sum over all worker processes."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            # python_info is the same in every worker; process_* of one worker would read as the
            # pod's, so under --workers only the platform collector is added.
            PlatformCollector(registry=registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


FLUSH_INTERVAL = 0.25  # seconds between flushes outside scrapes (what another worker's scrape sees)


class _Count:
    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child, self.n = child, 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.n += amount

    def flush(self) -> None:
        if self.n:
            n, self.n = self.n, 0.0
            self.child.inc(n)


class _Last:
    __slots__ = ("child", "value")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.value: float | None = None

    def set(self, value: float) -> None:
        self.value = value

    def flush(self) -> None:
        if self.value is not None:
            value, self.value = self.value, None
            self.child.set(value)


class _Observations:
    """A histogram child's counts per bucket and sum, as ``Histogram.observe`` keeps them."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)  # ends with +Inf
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # the first bucket with amount <= bound
        self.total += amount

    def flush(self) -> None:
        if not any(self.counts):
            return
        counts, self.counts, total, self.total = self.counts, [0] * len(self.bounds), self.total, 0.0
        for bucket, n in zip(self.child._buckets, counts, strict=True):
            if n:
                bucket.inc(n)
        self.child._sum.inc(total)


def _tally(child: Any) -> Any:
    if isinstance(child, Histogram):
        return _Observations(child)
    return _Last(child) if isinstance(child, Gauge) else _Count(child)
