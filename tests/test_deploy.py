"""Static checks of the deployment artifacts: Dockerfile, Helm chart, Grafana dashboard, alert rules.

Nothing here needs Docker, helm, a cluster or the network: files are read as text, YAML or JSON
and checked against the gateway's own code (the metrics registry, the config loader). What a
static check cannot prove (that the image builds, that the chart renders) is `docker build` and
`helm lint` / `helm template` in a release pipeline; docs/deployment.md lists the commands.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from gateway.errors import ERROR_STATUS
from gateway.metrics import Metrics
from gateway.settings.loader import TOP_KEYS, build_settings, deep_merge, load_catalog

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "webhook-gateway"
TEMPLATES = CHART / "templates"
DASHBOARD = ROOT / "deploy" / "grafana" / "webhook-gateway.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
CHART_ALERTS = CHART / "files" / "alerts.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
CONFIG_SCHEMA = ROOT / "config" / "gateway.schema.json"

METRIC_RE = re.compile(r"webhook_gateway_[a-z_]+")
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total")
# Labels Prometheus adds when it scrapes (target labels), usable in any selector or `by`.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "job", "instance", "service", "endpoint"})
SUCCESS_OUTCOMES = frozenset({"forwarded", "queued", "duplicate", "handshake"})
# Label values that selectors may test, by label (docs/metrics.md, "Label values").
KNOWN_VALUES: dict[str, frozenset[str]] = {
    "outcome": frozenset(ERROR_STATUS) | SUCCESS_OUTCOMES,
    "result": frozenset(
        {
            *("success", "timeout", "unreachable", "invalid_response", "error"),  # forward
            *(f"http_{n}xx" for n in range(1, 6)),
            *("delivered", "retry", "dead"),  # queue
            "ok",  # config reloads
        }
    ),
    "scope": frozenset({"source", "provider"}),
    "concern": frozenset({"dedup", "rate_limit", "events"}),
    "policy": frozenset({"open", "closed", "commit", "release", "retention", "retry", "mark_delivered", "mark_failed"}),
    "secret": frozenset(str(i) for i in range(10)),
    "reason": frozenset({"unavailable", "refused", "backlog", "error"}),  # audit rows lost
    "code": frozenset(ERROR_STATUS),  # shadow-mode rejections
    "status": frozenset({"queued", "delivering", "dead"}),
    "store": frozenset({"state", "events"}),
}


# --- the metrics registry ----------------------------------------------------------------------


def _exposed() -> tuple[dict[str, frozenset[str]], set[str]]:
    """Every series name ``Metrics().registry`` exposes, with its label names; and the families.

    A labelled metric exposes no sample until a child exists, so one child of each is created
    first (``_labelnames`` is prometheus_client's list of a metric's label names).
    """
    metrics = Metrics()
    for metric in vars(metrics).values():
        names = getattr(metric, "_labelnames", None)
        if names:
            metric.labels(*("x" for _ in names))
    series: dict[str, frozenset[str]] = {}
    families = set()
    for family in metrics.registry.collect():
        if family.name.startswith("webhook_gateway_"):  # not process_* / python_* (standard collectors)
            families.add(family.name)
        for sample in family.samples:
            series[sample.name] = series.get(sample.name, frozenset()) | frozenset(sample.labels)
    return series, families


SERIES, FAMILIES = _exposed()


def _family(name: str) -> str:
    """``webhook_gateway_x_seconds_bucket`` -> ``webhook_gateway_x_seconds`` (the family's name)."""
    for suffix in SERIES_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in FAMILIES:
            return name[: -len(suffix)]
    return name


def test_registry_has_the_expected_shape() -> None:
    assert "webhook_gateway_requests_total" in SERIES
    assert "webhook_gateway_request_duration_seconds_bucket" in SERIES
    assert "le" in SERIES["webhook_gateway_request_duration_seconds_bucket"]
    assert "webhook_gateway_in_flight_requests" in SERIES
    assert all(f.startswith("webhook_gateway_") for f in FAMILIES)
    # The standard collectors and the build info (issue 11).
    assert {"process_resident_memory_bytes", "python_info", "webhook_gateway_build_info"} <= set(SERIES)
    assert {"version", "python_version"} <= SERIES["webhook_gateway_build_info"]


# --- PromQL helpers ----------------------------------------------------------------------------

SELECTOR_RE = re.compile(r"(webhook_gateway_[a-z_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text("utf-8"))
    out = []
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            out.append(target["expr"])
    return out


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text("utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def all_exprs() -> Iterator[tuple[str, str]]:
    for expr in dashboard_exprs():
        yield "dashboard", expr
    for rule in alert_rules():
        yield f"alert {rule.get('alert')}", rule["expr"]


def _check_names(where: str, text: str) -> list[str]:
    """Names in free text (descriptions, docs): a series, or a family once its suffix is stripped."""
    problems = []
    for name in sorted(set(METRIC_RE.findall(text))):
        if name not in SERIES and _family(name) not in FAMILIES:
            problems.append(f"{where}: {name} is not a metric of gateway.metrics")
    return problems


def test_queries_use_only_exposed_series() -> None:
    """In PromQL a name must be a series as exposed (``_total``, ``_bucket``...), not a family name."""
    problems = []
    for where, expr in all_exprs():
        for name in sorted(set(METRIC_RE.findall(expr))):
            if name not in SERIES:
                family = _family(name)
                hint = f" (family {family} exists, but not this series)" if family in FAMILIES else ""
                problems.append(f"{where}: {name}{hint}")
    assert problems == []


def test_dashboard_uses_only_metric_names_from_the_registry() -> None:
    text = DASHBOARD.read_text("utf-8")
    assert METRIC_RE.search(text), "the dashboard references no gateway metric"
    assert _check_names(DASHBOARD.name, text) == []


def test_alerts_use_only_metric_names_from_the_registry() -> None:
    text = ALERTS.read_text("utf-8")
    assert METRIC_RE.search(text)
    assert _check_names(ALERTS.name, text) == []


def test_deployment_doc_uses_only_metric_names_from_the_registry() -> None:
    assert _check_names(DEPLOYMENT_DOC.name, DEPLOYMENT_DOC.read_text("utf-8")) == []


def test_dashboard_shows_every_metric_family() -> None:
    used = {_family(name) for name in METRIC_RE.findall(DASHBOARD.read_text("utf-8"))}
    missing = sorted(FAMILIES - used)
    assert missing == [], f"add a panel to deploy/grafana/webhook-gateway.json for {missing}"


def _values_match(label: str, op: str, value: str) -> str | None:
    """None when the matcher can match a known value of ``label`` (or the label is not checked)."""
    known = KNOWN_VALUES.get(label)
    if known is None or op in ("!=", "!~"):
        return None
    alternatives = value.split("|") if op == "=~" else [value]
    for alt in alternatives:
        if op == "=" and alt not in known:
            return f"{label}={alt!r} is not a value the gateway produces"
        if op == "=~" and not any(re.fullmatch(alt, v) for v in known):
            return f"{label}=~ alternative {alt!r} matches no value the gateway produces"
    return None


@pytest.mark.parametrize(("where", "expr"), list(all_exprs()))
def test_selectors_and_groupings_use_existing_labels(where: str, expr: str) -> None:
    problems = []
    expr_labels: set[str] = set(TARGET_LABELS)
    for name, matchers in SELECTOR_RE.findall(expr):
        allowed = SERIES.get(name, frozenset()) | TARGET_LABELS
        expr_labels |= SERIES.get(name, frozenset())
        for label, op, value in MATCHER_RE.findall(matchers):
            if label not in allowed:
                problems.append(f"{name} has no label {label!r}")
            bad = _values_match(label, op, value)
            if bad:
                problems.append(f"{name}: {bad}")
    for name in METRIC_RE.findall(expr):
        expr_labels |= SERIES.get(name, frozenset())
    for group in GROUPING_RE.findall(expr):
        for label in (part.strip() for part in group.split(",")):
            if label and label not in expr_labels:
                problems.append(f"grouping by {label!r}, a label none of the expression's metrics has")
    assert problems == [], f"{where}: {expr}"


def test_promql_brackets_balance() -> None:
    for where, expr in all_exprs():
        stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may hold brackets
        for opening, closing in ("()", "[]", "{}"):
            assert stripped.count(opening) == stripped.count(closing), f"{where}: unbalanced {opening}{closing}: {expr}"


# --- Grafana dashboard -------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    data = json.loads(DASHBOARD.read_text("utf-8"))
    assert data["uid"] == "webhook-gateway"
    assert data["title"]
    assert isinstance(data["schemaVersion"], int)
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in data["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_covers_the_requested_views() -> None:
    text = json.dumps(json.loads(DASHBOARD.read_text("utf-8")))
    for needle in (
        "sum by (provider, outcome) (rate(webhook_gateway_requests_total",  # request rate
        "histogram_quantile(0.99, sum by (le, provider) (rate(webhook_gateway_request_duration_seconds_bucket",
        "histogram_quantile(0.5, sum by (le, provider) (rate(webhook_gateway_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, provider) (rate(webhook_gateway_forward_duration_seconds_bucket",
        "histogram_quantile(0.5, sum by (le, provider) (rate(webhook_gateway_forward_duration_seconds_bucket",
        "sum by (provider, secret) (rate(webhook_gateway_signature_secret_matches_total",
        "time() - max by (provider) (webhook_gateway_last_event_timestamp_seconds",
        "sum by (result) (rate(webhook_gateway_queue_deliveries_total",
    ):
        assert needle in text, needle


# --- alert rules -------------------------------------------------------------------------------

DURATION_RE = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_alerts_file_parses_and_every_rule_is_complete() -> None:
    data = yaml.safe_load(ALERTS.read_text("utf-8"))
    assert isinstance(data, dict)
    assert set(data) == {"groups"}
    rules = alert_rules()
    assert rules
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        name = rule.get("alert")
        assert isinstance(name, str) and re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), rule
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
        assert "for" in rule and DURATION_RE.match(str(rule["for"])), name
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        assert isinstance(rule.get("annotations", {}).get("summary"), str), name
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, name


def test_alerts_cover_the_requested_conditions() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    joined = "\n".join(exprs.values())
    assert 'outcome="invalid_signature"' in joined or "invalid_signature|" in joined
    assert re.search(r"webhook_gateway_forward_duration_seconds_count\{result", joined)  # upstream failures
    assert "webhook_gateway_last_event_timestamp_seconds" in joined  # provider silent
    assert 'webhook_gateway_queue_deliveries_total{result="dead"}' in joined
    assert "webhook_gateway_store_errors_total" in joined
    assert 'webhook_gateway_signature_secret_matches_total{secret!="0"}' in joined  # rotation unfinished
    assert "histogram_quantile(0.99" in joined and "webhook_gateway_request_duration_seconds_bucket" in joined


def test_chart_ships_the_same_alert_rules() -> None:
    assert CHART_ALERTS.read_text("utf-8") == ALERTS.read_text("utf-8"), (
        "copy deploy/prometheus/alerts.yaml to helm/webhook-gateway/files/alerts.yaml"
    )
    template = (TEMPLATES / "prometheusrule.yaml").read_text("utf-8")
    assert '.Files.Get "files/alerts.yaml"' in template
    assert "kind: PrometheusRule" in template


# --- Helm chart: metadata, values, schema --------------------------------------------------------


def load_values() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))
    assert isinstance(values, dict)
    return values


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text("utf-8"))
    return schema


def test_chart_yaml() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text("utf-8"))
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "webhook-gateway"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", str(chart["version"]))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert str(chart["appVersion"]) == project["version"], "Chart appVersion follows pyproject.toml's version"
    assert str(load_values()["image"]["tag"]) == str(chart["appVersion"]), "values image.tag follows appVersion"


def test_values_schema_is_valid_and_values_validate() -> None:
    schema = load_schema()
    Draft7Validator.check_schema(schema)
    errors = sorted(Draft7Validator(schema).iter_errors(load_values()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


@pytest.mark.parametrize(
    "patch",
    [
        {"mode": "daemonset"},
        {"config": {"listen": {"port": 0}}},
        {"config": {"upstream": {"mode": "async"}}},
        {"config": {"state": {"url": "mysql://x"}}},
        {"config": {"no_such_key": 1}},
        {"terminationGracePeriodSeconds": "30"},
        {"workers": 0},
        {"secrets": {"mountPath": "relative/path"}},
        {"image": {"digest": "latest"}},
    ],
)
def test_values_schema_rejects_bad_values(patch: dict[str, Any]) -> None:
    values = deep_merge(load_values(), patch)
    assert list(Draft7Validator(load_schema()).iter_errors(values)), f"schema accepted {patch}"


def test_values_schema_config_keys_are_the_loaders() -> None:
    config_schema = load_schema()["properties"]["config"]
    assert set(config_schema["properties"]) == set(TOP_KEYS)
    assert config_schema["additionalProperties"] is False


def test_security_defaults() -> None:
    values = load_values()
    pod, container = values["podSecurityContext"], values["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert container["runAsNonRoot"] is True
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert values["resources"]["requests"] and values["resources"]["limits"]["memory"]
    # The image's user (Dockerfile) and the chart's agree, so fsGroup can read the Secret files.
    assert f"USER {pod['runAsUser']}:{pod['runAsGroup']}" in DOCKERFILE.read_text("utf-8")
    assert pod["fsGroup"] == pod["runAsGroup"]


# --- the gateway config held in values.yaml --------------------------------------------------------


def rendered_config(values: dict[str, Any]) -> dict[str, Any]:
    """What the ConfigMap holds: the template ``webhook-gateway.configData`` in Python."""
    cfg = copy.deepcopy(values["config"])
    if not isinstance(cfg.get("listen"), dict):
        cfg["listen"] = {}
    if not cfg["listen"].get("host"):
        cfg["listen"]["host"] = "0.0.0.0"  # noqa: S104 (a pod listens on its IP)
    if not isinstance(cfg.get("upstream"), dict):
        cfg["upstream"] = {}
    if not cfg["upstream"].get("url"):
        cfg["upstream"]["url"] = "http://127.0.0.1:%d/events" % int(values["apiPort"])  # noqa: UP031 (as in Go)
    return cfg


def test_config_defaults_match_the_template() -> None:
    helpers = (TEMPLATES / "_helpers.tpl").read_text("utf-8")
    assert '(printf "http://127.0.0.1:%d/events" (int .Values.apiPort))' in helpers
    assert 'set $listen "host" "0.0.0.0"' in helpers


def _secret_files(cfg: Any, mount: str, tmp: Path, found: list[str]) -> Any:
    """Point every ``file:<mount>/<key>`` at a fake secret under ``tmp``."""
    if isinstance(cfg, dict):
        return {k: _secret_files(v, mount, tmp, found) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_secret_files(v, mount, tmp, found) for v in cfg]
    if isinstance(cfg, str) and cfg.startswith("file:"):
        path = cfg[len("file:") :]
        assert path.startswith(mount + "/"), f"{cfg}: file secrets must come from the mounted Secret ({mount})"
        key = path[len(mount) + 1 :]
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", key), f"{key!r} is not a valid Secret key"
        (tmp / key).write_text("whsec_dGVzdC1zZWNyZXQtZm9yLWRlcGxveS10ZXN0cw==\n")
        found.append(key)
        return f"file:{tmp / key}"
    return cfg


def test_default_config_passes_the_gateway_loader(tmp_path: Path) -> None:
    values = load_values()
    mount = values["secrets"]["mountPath"]
    found: list[str] = []
    cfg = _secret_files(rendered_config(values), mount, tmp_path, found)
    assert found, "the default config should show how secrets come from the mounted Secret"
    settings = build_settings("values.yaml#config", cfg, load_catalog(), {})
    assert settings.providers
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.port == values["config"]["listen"]["port"]
    assert settings.upstream.url == f"http://127.0.0.1:{values['apiPort']}/events"
    for spec in settings.providers.values():
        assert spec.signature is not None, "the chart's example providers are signed"
        assert all(s.label.startswith(f"file:{tmp_path}/") for s in spec.signature.secrets)
    # The pod's grace period covers the drain, with the loader's own defaults applied.
    assert values["terminationGracePeriodSeconds"] > settings.drain_delay + settings.shutdown_timeout


def test_default_config_matches_the_config_schema() -> None:
    if not CONFIG_SCHEMA.exists():
        pytest.skip("config/gateway.schema.json is not there")
    schema = json.loads(CONFIG_SCHEMA.read_text("utf-8"))
    Draft202012Validator.check_schema(schema)
    errors = list(Draft202012Validator(schema).iter_errors(rendered_config(load_values())))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_sidecar_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    """The `webhook-gateway:` values block of docs/deployment.md validates and loads."""
    blocks = re.findall(r"```yaml\n(.*?)```", DEPLOYMENT_DOC.read_text("utf-8"), re.S)
    sidecar = [yaml.safe_load(b) for b in blocks if b.lstrip().startswith("# payments-api/values.yaml")]
    assert len(sidecar) == 1
    values = deep_merge(load_values(), sidecar[0]["webhook-gateway"])
    assert values["mode"] == "sidecar"
    assert list(Draft7Validator(load_schema()).iter_errors(values)) == []
    cfg = _secret_files(rendered_config(values), values["secrets"]["mountPath"], tmp_path, [])
    assert build_settings("docs/deployment.md", cfg, load_catalog(), {}).providers


# --- Helm chart: templates ---------------------------------------------------------------------------

ACTION_RE = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
BLOCK_OPENERS = frozenset({"if", "range", "with", "define", "block"})


def _actions(text: str) -> Iterator[str]:
    for action in ACTION_RE.findall(text):
        if not action.startswith("/*"):
            yield action


def template_files() -> list[Path]:
    return sorted(p for p in TEMPLATES.iterdir() if p.is_file())


@pytest.mark.parametrize("path", template_files(), ids=lambda p: p.name)
def test_template_blocks_balance(path: Path) -> None:
    depth = 0
    for action in _actions(path.read_text("utf-8")):
        word = action.split(None, 1)[0] if action.split() else ""
        if word in BLOCK_OPENERS:
            depth += 1
        elif word == "end":
            depth -= 1
            assert depth >= 0, f"{path.name}: `end` without an opening block"
    assert depth == 0, f"{path.name}: {depth} block(s) left open"


def test_included_templates_are_defined() -> None:
    defined, used = set(), set()
    for path in template_files():
        text = path.read_text("utf-8")
        defined |= set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', text))
        used |= set(re.findall(r'\b(?:include|template)\s+"([^"]+)"', text))
    assert used <= defined, f"undefined: {sorted(used - defined)}"
    for name in (
        "webhook-gateway.sidecarContainer",
        "webhook-gateway.sidecarVolumes",
        "webhook-gateway.sidecarPodAnnotations",
        "webhook-gateway.terminationGracePeriodSeconds",
        "webhook-gateway.validate",
        "webhook-gateway.configData",
    ):
        assert name in defined, name
    # The docs' sidecar example uses only templates that exist.
    doc_uses = set(re.findall(r'include\s+"(webhook-gateway\.[^"]+)"', DEPLOYMENT_DOC.read_text("utf-8")))
    assert doc_uses and doc_uses <= defined, f"docs use undefined templates: {sorted(doc_uses - defined)}"


def test_templates_cover_the_chart_objects() -> None:
    kinds = set()
    for path in template_files():
        kinds |= set(re.findall(r"^kind:\s*(\w+)", path.read_text("utf-8"), re.M))
    assert kinds >= {
        "Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler",
        "ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy", "Job",
    }  # fmt: skip
    assert (TEMPLATES / "NOTES.txt").is_file()


def test_grace_period_guard_and_probes() -> None:
    helpers = (TEMPLATES / "_helpers.tpl").read_text("utf-8")
    guard = helpers[helpers.index('define "webhook-gateway.validate"') :]
    guard = guard[: guard.index("{{- end -}}\n\n")]
    assert "terminationGracePeriodSeconds" in guard and "fail" in guard
    assert "$shutdown.drain_delay" in guard and "$shutdown.timeout" in guard
    assert re.search(r"livenessProbe:\s*\n\s*httpGet:\s*\n\s*path: /healthz", helpers)
    assert re.search(r"readinessProbe:\s*\n\s*httpGet:\s*\n\s*path: /readyz", helpers)
    # The ConfigMap is mounted as a directory: a subPath mount would never see an update.
    assert "subPath:" not in helpers
    assert "mountPath: /etc/webhook-gateway\n" in helpers
    assert "/etc/webhook-gateway/gateway.yaml" in helpers
    deployment = (TEMPLATES / "deployment.yaml").read_text("utf-8")
    assert 'include "webhook-gateway.sidecarContainer" .' in deployment
    assert "terminationGracePeriodSeconds:" in deployment


def test_migrate_job_is_a_hook_for_postgresql_only() -> None:
    text = (TEMPLATES / "migrate-job.yaml").read_text("utf-8")
    assert text.startswith('{{- if and .Values.migrate.enabled (include "webhook-gateway.eventsOnPostgres" .) }}')
    assert "helm.sh/hook: pre-install,pre-upgrade" in text
    assert '["migrate", "--config", "/etc/webhook-gateway/gateway.yaml"]' in text
    helpers = (TEMPLATES / "_helpers.tpl").read_text("utf-8")
    assert 'hasPrefix "postgresql://" $url' in helpers and 'hasPrefix "postgres://" $url' in helpers


def test_config_map_checksum_annotation() -> None:
    helpers = (TEMPLATES / "_helpers.tpl").read_text("utf-8")
    assert 'include "webhook-gateway.configData" . | sha256sum' in helpers
    assert "checksum/webhook-gateway-config" in helpers
    assert "webhook-gateway.configData" in (TEMPLATES / "configmap.yaml").read_text("utf-8")


# --- Dockerfile --------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def test_dockerfile_stages_and_base() -> None:
    instructions = dockerfile_instructions()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in instructions if word == "ARG" and "=" in rest
    }
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image.split()[0])
        assert resolved.startswith("python:3.11-slim"), image
    assert any(word == "COPY" and "--from=build" in rest for word, rest in instructions)


def test_dockerfile_runtime_contract() -> None:
    instructions = dockerfile_instructions()
    runtime = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets USER"
    assert users[-1].split(":")[0] not in {"root", "0"}, "runs as non-root"
    assert ("ENTRYPOINT", '["webhook-gateway"]') in runtime
    assert ("CMD", '["run", "--config", "/etc/webhook-gateway/gateway.yaml"]') in runtime
    assert ("EXPOSE", "8080") in runtime
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    health = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert len(health) == 1 and "urllib" in health[0] and "python" in health[0]
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "/healthz" in health[0] or "127.0.0.1:8080/healthz" in env


def test_dockerfile_installs_with_constraints_and_bakes_no_secret() -> None:
    instructions = dockerfile_instructions()
    runs = [rest for word, rest in instructions if word == "RUN"]
    # With the otlp extra, so `tracing.exporter: otlp` is not refused in the image (issue 11).
    assert any("pip install -c constraints.txt '.[otlp]'" in r for r in runs)
    assert any("optional-dependencies']['otlp']" in r for r in runs), "the otlp deps in the cached layer"
    assert any("import opentelemetry.exporter.otlp.proto.http" in r for r in runs), "smoke-tested"
    assert all("pip install" not in r or "-c constraints.txt" in r for r in runs if "uninstall" not in r)
    for word, rest in instructions:
        if word in {"ENV", "ARG"}:
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", rest):
                if name == "WEBHOOK_SECRETS_DIR":  # a directory, not a secret
                    continue
                assert not re.search(r"SECRET|PASSWORD|TOKEN|API_KEY|PRIVATE", name, re.I), f"{word} {name}"
        if word in {"COPY", "ADD"}:
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            assert "." not in sources and "./" not in sources, "copy named paths only, never the whole context"


def test_dockerignore_admits_only_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore starts by excluding everything"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            copied |= {s.rstrip("/") for s in rest.split()[:-1] if not s.startswith("--")}
    assert copied <= allowed, f"COPY sources excluded by .dockerignore: {sorted(copied - allowed)}"
    for source in copied:
        assert (ROOT / source).exists(), source


def test_package_data_ships_every_runtime_resource() -> None:
    """The image installs the package non-editable: files outside package-data are left behind.

    Everything under gateway/ that is not Python source (provider catalog, demo config, OpenAPI,
    SQL migrations) is read at run time through importlib.resources.
    """
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = pyproject["tool"]["setuptools"].get("package-data", {}).get("gateway", [])
    missing = []
    for path in sorted((ROOT / "gateway").rglob("*")):
        if not path.is_file() or path.suffix in {".py", ".pyc", ".pyi"} or "__pycache__" in path.parts:
            continue
        if path.name == "py.typed" or path.suffix == ".md":  # documentation, not read at run time
            continue
        relative = path.relative_to(ROOT / "gateway").as_posix()
        if not any(fnmatch(relative, pattern) and relative.count("/") == pattern.count("/") for pattern in patterns):
            missing.append(relative)
    assert missing == [], f"add to [tool.setuptools.package-data] gateway in pyproject.toml: {missing}"


# --- docs that drifted from the code (issue 11) ------------------------------------------------------


def test_deployment_doc_matches_the_supervisor_and_the_shutdown_budget() -> None:
    doc = " ".join(DEPLOYMENT_DOC.read_text("utf-8").split())
    workers = (ROOT / "gateway" / "workers.py").read_text("utf-8")
    assert "SIGHUP" in workers, "the supervisor forwards SIGHUP (gateway/workers.py)"
    assert "does not pass `SIGHUP` on" not in doc
    assert "passes `SIGHUP` on to every worker" in doc
    app = (ROOT / "gateway" / "app.py").read_text("utf-8")
    assert "deadline - time.monotonic()" in app, "queue deliveries get what is left of the budget"
    assert "get their own wait" not in doc
    assert "what is left of the same `shutdown.timeout` budget" in doc


def test_metrics_doc_lists_every_outcome() -> None:
    lines = (ROOT / "docs" / "metrics.md").read_text("utf-8").splitlines()
    row = next(line for line in lines if line.startswith("| `outcome`"))
    missing = sorted(o for o in SUCCESS_OUTCOMES if f"`{o}`" not in row)  # handshake was missing
    assert missing == []
