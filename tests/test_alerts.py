"""Alert rules through promtool: check, unit tests that fire and stay silent, and real scrapes.

The synthetic tests live in deploy/prometheus/alerts_test.yaml. The scrape tests feed what a real
gateway exposes on /metrics to promtool, so the alerts are proven against the series as the
gateway really creates them (the first reload failure fires because the series exists at 0).
"""

from __future__ import annotations

import dataclasses
import re
import types
from pathlib import Path
from typing import Any

import helpers_deploy as hd
import pytest
import yaml

from gateway.app_state import SERVICES
from gateway.metrics import Metrics
from gateway.reload import reload


@pytest.fixture(autouse=True)
def _tools() -> None:
    hd.require(hd.promtool_path)


def alert_names() -> list[str]:
    data = yaml.safe_load(hd.RULES.read_text("utf-8"))
    return [r["alert"] for g in data["groups"] for r in g["rules"]]


def test_promtool_check_rules() -> None:
    done = hd.run([hd.promtool_path(), "check", "rules", str(hd.RULES)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in done.stdout


def test_rule_unit_tests_pass() -> None:
    done = hd.promtool_test()
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    spec = yaml.safe_load(hd.RULE_TESTS.read_text("utf-8"))
    fires, silent = set(), set()
    for test in spec["tests"]:
        for case in test["alert_rule_test"]:
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    names = set(alert_names())
    assert names - fires == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown silent"


def test_the_unit_tests_fail_when_an_alert_cannot_fire() -> None:
    """A rule that never fires makes promtool fail, naming it: the tests above can fail."""
    text = hd.RULES.read_text("utf-8")
    broken = re.sub(r"(- alert: WebhookGatewayQueueLagging\n\s+expr: \|\n)(\s+)(.*)\n", r"\1\2vector(1) == 2\n", text)
    assert broken != text
    done = hd.promtool_test(rules_text=broken)
    assert done.returncode != 0
    assert "WebhookGatewayQueueLagging" in done.stdout + done.stderr


def test_every_alert_has_a_runbook_section() -> None:
    data = yaml.safe_load(hd.RULES.read_text("utf-8"))
    runbook = (hd.ROOT / "docs" / "runbook.md").read_text("utf-8")
    for rule in (r for g in data["groups"] for r in g["rules"]):
        url = rule["annotations"]["runbook_url"]
        assert url.endswith("docs/runbook.md#" + rule["alert"].lower()), rule["alert"]
        assert f"## {rule['alert']}\n" in runbook, rule["alert"]


# --- real scrapes ------------------------------------------------------------------------------


def alert_test(scrapes: list[str], alertname: str, at: str, expected: list[dict[str, str]]) -> dict[str, Any]:
    series = hd.scrapes_to_input_series(scrapes, {"namespace": "pay"})
    case = {"eval_time": at, "alertname": alertname, "exp_alerts": [{"exp_labels": e} for e in expected]}
    return {"interval": "1m", "input_series": series, "alert_rule_test": [case]}


def run_tests(tests: list[dict[str, Any]]) -> str:
    done = hd.promtool_tests(tests)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_first_reload_failure_fires(make_gateway: Any, kit: types.SimpleNamespace, tmp_path: Path) -> None:
    """Issue 11: the error counter must exist at 0 before the first failure, else increase() is 0."""
    gw = await make_gateway()
    services = gw.app[SERVICES]
    bad = tmp_path / "gateway.yaml"
    bad.write_text("providers: {stripe: {secrets: []}}\nno_such_key: 1\n")
    services.settings = dataclasses.replace(services.settings, file=str(bad))
    before = await hd.scrape(gw)
    assert 'webhook_gateway_config_reloads_total{result="error"} 0.0' in before
    assert reload(gw.app) is False
    after = await hd.scrape(gw)
    scrapes = [before, before, after, after, after]
    labels = {"severity": "warning", "namespace": "pay"}
    run_tests([alert_test(scrapes, "WebhookGatewayConfigReloadFailed", "4m", [labels])])


async def test_series_for_alerts_exist_at_zero_before_any_event(make_gateway: Any) -> None:
    gw = await make_gateway()
    text = await hd.scrape(gw)
    for provider in gw.settings.providers:
        for outcome in ("forwarded", "invalid_signature", "missing_signature", "stale_timestamp"):
            assert f'webhook_gateway_requests_total{{outcome="{outcome}",provider="{provider}"}} 0.0' in text
    assert 'webhook_gateway_store_errors_total{concern="dedup",policy="closed"} 0.0' in text
    queue = Metrics()  # queue mode needs PostgreSQL to start; the series come from the same call
    queue.init_series(["stripe"], queue=True)
    assert 'webhook_gateway_queue_deliveries_total{provider="stripe",result="dead"} 0.0' in queue.render().decode()


def test_first_dead_letter_fires_only_with_the_zero_sample() -> None:
    """The defect itself: a series born at 1 (no 0 sample) is never seen to increase."""
    born_at_one = ["webhook_gateway_queue_deliveries_total{provider=\"stripe\",result=\"dead\"} 1\n"] * 5
    with_zero = ["webhook_gateway_queue_deliveries_total{provider=\"stripe\",result=\"dead\"} 0\n", *born_at_one]
    labels = {"severity": "critical", "namespace": "pay", "provider": "stripe"}
    run_tests([alert_test(with_zero, "WebhookGatewayDeadLetters", "3m", [labels])])
    run_tests([alert_test(born_at_one, "WebhookGatewayDeadLetters", "3m", [])])


async def test_healthy_gateway_fires_no_alert(make_gateway: Any, kit: types.SimpleNamespace) -> None:
    """Real scrapes of a gateway serving signed webhooks: not one alert fires."""
    gw = await make_gateway()
    scrapes = [await hd.scrape(gw)]
    for i in range(4):
        for n in range(3):
            await gw.expect(200, "stripe", kit.stripe_body(f"evt_healthy_{i}_{n}"))
        scrapes.append(await hd.scrape(gw))
    scrapes += [scrapes[-1]] * 15  # a quiet quarter of an hour: rates fall to 0, nothing fires
    tests = [alert_test(scrapes, name, at, []) for name in alert_names() for at in ("4m", "18m")]
    run_tests(tests)


async def test_promtool_check_metrics_on_a_real_scrape(make_gateway: Any, kit: types.SimpleNamespace) -> None:
    gw = await make_gateway()
    await gw.expect(200, "stripe", kit.stripe_body("evt_lint"))
    text = await hd.scrape(gw)
    assert "process_resident_memory_bytes" in text and "python_info" in text
    assert 'webhook_gateway_build_info{python_version="' in text
    done = hd.subprocess.run(
        [hd.promtool_path(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
