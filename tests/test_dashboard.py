"""The Grafana dashboard, linted against a real gateway: names from a real /metrics scrape, units,
$__rate_interval, the datasource variable, the requested panels, and no panel without data.

"No data" is checked by Prometheus' own engine: each panel query (with Grafana's variables
filled in as "All") becomes ``absent(<query>)`` in a rule that promtool evaluates over real
scrapes of a gateway that served signed webhooks; a panel with no series makes it fire.
"""

from __future__ import annotations

import json
import re
import types
from typing import Any

import helpers_deploy as hd
import yaml

from gateway.metrics import Metrics

DASHBOARD = hd.ROOT / "deploy" / "grafana" / "webhook-gateway.json"
NAME_RE = re.compile(r"\b((?:webhook_gateway|process|python)_[a-z0-9_]+)\b")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)")
# Present only in some setups, so absent from the sync-mode scrape below: queue mode needs
# PostgreSQL, shadow rejections a provider in shadow mode. The registry has them (checked).
SETUP_SPECIFIC = {"webhook_gateway_queue_deliveries_total", "webhook_gateway_shadow_rejections_total"}


def panels() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(DASHBOARD.read_text("utf-8"))["panels"]
    return [p for p in data if p["type"] != "row"]


async def healthy_scrapes(make_gateway: Any, kit: types.SimpleNamespace) -> list[str]:
    gw = await make_gateway()
    scrapes = []
    for i in range(4):
        for n in range(3):
            await gw.expect(200, "stripe", kit.stripe_body(f"evt_dash_{i}_{n}"))
        await gw.expect(200, "stripe", kit.stripe_body(f"evt_dash_{i}_0"))  # a duplicate
        scrapes.append(await hd.scrape(gw))
    return scrapes


async def test_every_query_names_series_of_a_real_scrape(make_gateway: Any, kit: types.SimpleNamespace) -> None:
    text = (await healthy_scrapes(make_gateway, kit))[-1]
    exposed = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    registry = Metrics()
    registry.init_series(["stripe"], queue=True)
    assert {s.name for f in registry.registry.collect() for s in f.samples} | {
        "webhook_gateway_shadow_rejections_total"  # a labelled counter without children: a family
    } >= SETUP_SPECIFIC
    missing = {
        (p["title"], name)
        for p in panels()
        for t in p["targets"]
        for name in NAME_RE.findall(GROUPING_RE.sub("", t["expr"]))
        if name not in exposed | SETUP_SPECIFIC
    }
    assert missing == set()


def test_units_rate_interval_and_datasource() -> None:
    data = json.loads(DASHBOARD.read_text("utf-8"))
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']}: no unit"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            for window in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", target["expr"]):
                assert window == "$__rate_interval", f"{panel['title']}: rate over [{window}]"


def test_the_requested_panels_exist() -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels()}
    wanted = {
        "rate per provider": r"sum by \(provider, outcome\) \(rate\(webhook_gateway_requests_total",
        "errors": r'outcome!~"forwarded\|queued\|duplicate\|handshake"',
        "latency per provider": r"histogram_quantile\(0\.99, sum by \(le, provider\) \(rate\(webhook_gateway_request_",
        "dedup": r"webhook_gateway_dedup_hits_total",
        "rate-limit rejections": r"webhook_gateway_rate_limited_total",
        "queue depth": r"webhook_gateway_queue_events",
        "queue lag": r"webhook_gateway_queue_oldest_pending_age_seconds",
        "dead letters": r'result="dead"',
        "delivery latency": r"webhook_gateway_forward_duration_seconds_bucket",
        "store health": r"webhook_gateway_store_up",
    }
    missing = [what for what, pattern in wanted.items() if not any(re.search(pattern, e) for e in exprs.values())]
    assert missing == []


async def test_no_panel_shows_no_data_on_a_healthy_gateway(make_gateway: Any, kit: types.SimpleNamespace) -> None:
    hd.require(hd.promtool_path)
    scrapes = await healthy_scrapes(make_gateway, kit)
    rules, cases = [], []
    for panel in panels():
        for target in panel["targets"]:
            name = f"NoData_{panel['id']}_{target['refId']}"
            rules.append({"alert": name, "expr": f"absent({hd.grafana_to_promql(target['expr'])})"})
            cases.append({"eval_time": "3m", "alertname": name, "exp_alerts": []})
    series = hd.scrapes_to_input_series(scrapes, {"namespace": "pay", "pod": "gw-0", "instance": "10.0.0.1:8080"})
    test = {"interval": "1m", "input_series": series, "alert_rule_test": cases}
    done = hd.promtool_tests([test], rules_text=yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    titles = {f"NoData_{p['id']}_": p["title"] for p in panels()}
    empty = sorted({titles[m] for m in re.findall(r"alertname: (NoData_\d+_)", done.stdout + done.stderr)})
    assert (done.returncode, empty) == (0, []), (done.stdout + done.stderr)[-3000:]
