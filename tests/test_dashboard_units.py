"""Small parts of the dashboard on their own: the metrics sampler, filters, the tunnel card."""

from __future__ import annotations

import time

import jinja2
import pytest

from dashboard.filters import parse_query
from dashboard.sampler import Sampler, quantile
from dashboard.templating import setup_filters
from gateway.errors import Rejection
from gateway.metrics import Metrics


def test_quantile_is_prometheus_histogram_quantile():
    # Buckets 0.0005, 0.001, 0.0025, ...: 10 observations, 9 under 1 ms and 1 under 2.5 ms.
    counts = [0, 9, 10] + [10] * 12
    assert quantile(0.5, counts) == pytest.approx(0.0005 + 0.0005 * (5 / 9))
    assert quantile(0.95, counts) == pytest.approx(0.001 + 0.0015 * 0.5)
    assert quantile(0.95, [0] * 15) is None
    assert quantile(0.99, [0] * 14 + [3]) == 10.0  # all in +Inf: the highest finite bound


def test_sampler_series_counts_per_minute_from_the_metrics():
    metrics = Metrics()
    start = time.time()
    sampler = Sampler(metrics)
    for outcome in ("forwarded", "forwarded", "invalid_signature"):
        metrics.requests.labels("stripe", outcome).inc()
        metrics.request_seconds.labels("stripe").observe(0.002)
    series = sampler.series("hour", now=start + 1)
    stripe = series["providers"]["stripe"]
    assert stripe["rate"][-1] == 3 and stripe["errors"][-1] == 1
    assert stripe["p95_ms"][-1] == pytest.approx(2.425)
    assert stripe["rate"][0] is None  # before the process started: no data, not zero
    assert sampler.last_error["stripe"][1] == "invalid_signature"
    day = sampler.series("day", now=start + 2)
    assert len(day["t"]) == 96 and day["providers"]["stripe"]["rate"][-1] == pytest.approx(3 * 60 / 900)


def test_filters_refuse_what_they_cannot_read(make_settings):
    settings = make_settings()
    q = parse_query({"outcome": "rejected", "code": "401"}, settings)
    assert q.events is None and q.codes == {"unauthorized", "missing_signature", "invalid_signature", "stale_timestamp"}
    q = parse_query({"provider": "stripe", "q": '{"a": [1]}', "since": "2026-12-01T10:00"}, settings)
    assert q.events is not None and q.events.contains == {"a": [1]} and q.events.since.tzinfo is not None
    for bad in ({"q": "[1"}, {"code": "20"}, {"before": "0"}, {"range": "1y"}, {"outcome": "x"}, {"provider": "x"}):
        with pytest.raises(Rejection) as caught:
            parse_query(bad, settings)
        assert caught.value.status == 400


def render_tiles(health: dict) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("dashboard", "templates"), autoescape=True)
    setup_filters(env)
    context = {
        "store": {"health": health, "queue": None, "oldest_age": None, "tunnel": health.get("tunnel")},
        "cards": [], "rejections": [], "audit": [], "mode": "sync", "since": 0, "now": 0, "root": "/", "csrf": "",
    }  # fmt: skip
    return env.get_template("partials/overview.html").render(context)


def test_tunnel_card_only_when_the_health_report_has_one():
    health = {
        "status": "healthy", "version": "0.1.0", "draining": False,
        "store": {"ok": True, "url": "memory://"}, "events": {"ok": True, "url": "memory://", "durable": False},
        "upstream": {"ok": True, "url": "http://u"},
    }  # fmt: skip
    assert "data-tunnel" not in render_tiles(health)
    shown = render_tiles({**health, "tunnel": {"public_url": "https://abc.ngrok.app", "region": "eu", "up": True}})
    assert "data-tunnel" in shown and "https://abc.ngrok.app" in shown and "eu" in shown
