"""The Helm chart rendered by the real (pinned) helm: assertions over the YAML, helm-unittest style.

Every ci/*-values.yaml and the example host chart (helm/examples/payments-api) are rendered and
validated against the Kubernetes 1.30 to 1.35 schemas (kubernetes-validate, strict); then the
pod specs are checked for what the docs promise: restricted Pod Security, probes, the grace
period, the config checksum, Secret files, the sidecar's place, the toggles.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import helpers_deploy as hd
import pytest
import yaml

CI_VALUES = sorted((hd.CHART / "ci").glob("*-values.yaml"))


@pytest.fixture(autouse=True)
def _tools() -> None:
    hd.require(hd.helm_path)


@functools.cache
def rendered(name: str, *sets: str) -> list[dict[str, Any]]:
    if name == "example":
        return hd.documents(hd.render_example())
    return hd.documents(hd.helm_template([hd.CHART / "ci" / name] if name else [], list(sets)))


def kinds(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"] + ("/dashboard" if d["metadata"]["name"].endswith("-dashboard") else ""): d for d in docs}


def pod_of(docs: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    (workload,) = [d for d in docs if d["kind"] == kind]
    spec: dict[str, Any] = workload["spec"]["template"]
    return spec


def gateway_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "webhook-gateway"]
    return container


@pytest.mark.parametrize("values", [p.name for p in CI_VALUES] + ["example"])
@pytest.mark.parametrize("version", hd.K8S_VERSIONS)
def test_every_ci_values_file_renders_valid_kubernetes_objects(values: str, version: str) -> None:
    docs = rendered(values)
    assert docs
    assert hd.validate(docs, version) == []


def test_the_validator_catches_a_bad_object() -> None:
    """So a clean run above means something: an unknown field and a wrong type are refused."""
    (deployment,) = [d for d in rendered("standalone-values.yaml") if d["kind"] == "Deployment"]
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["probez"] = {}
    bad["spec"]["replicas"] = "three"
    assert len(hd.validate([bad], hd.K8S_VERSIONS[0])) == 1


def test_ci_values_cover_the_requested_setups() -> None:
    every = {name: kinds(rendered(name)) for name in [p.name for p in CI_VALUES] + ["example"]}
    seen = set().union(*every.values())
    assert {"Deployment", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap/dashboard", "Ingress",
            "NetworkPolicy", "PodDisruptionBudget", "Job"} <= seen  # fmt: skip
    deployment = every["replicas-redis-postgres-values.yaml"]["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    env = {e["name"]: e for e in gateway_container(deployment["spec"]["template"])["env"]}
    assert env["PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "pg-password"
    config = yaml.safe_load(every["replicas-redis-postgres-values.yaml"]["ConfigMap"]["data"]["gateway.yaml"])
    assert config["state"]["url"].startswith("redis://:${REDIS_PASSWORD}@")  # no password in the ConfigMap
    assert config["events"]["url"].startswith("postgresql://gateway:${PG_PASSWORD}@")


@pytest.mark.parametrize("values", ["standalone-values.yaml", "example"])
def test_restricted_pod_security(values: str) -> None:
    pod = pod_of(rendered(values))
    pod_ctx = pod["spec"].get("securityContext", {})
    for container in pod["spec"]["containers"]:
        ctx = {**pod_ctx, **container.get("securityContext", {})}
        where = f"{values}: {container['name']}"
        assert ctx.get("runAsNonRoot") is True, where
        assert ctx.get("runAsUser", 1) != 0, where
        assert ctx.get("allowPrivilegeEscalation") is False, where
        assert ctx.get("readOnlyRootFilesystem") is True, where
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
    assert pod["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", ["standalone-values.yaml", "example"])
def test_probes_grace_period_checksum_and_secret_files(values: str) -> None:
    docs = rendered(values)
    pod = pod_of(docs)
    gw = gateway_container(pod)
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and "gateway.yaml" in d.get("data", {})]
    config = yaml.safe_load(configmap["data"]["gateway.yaml"])
    shutdown = config["shutdown"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= shutdown["drain_delay"] + shutdown["timeout"]
    checksum = pod["metadata"]["annotations"]["checksum/webhook-gateway-config"]
    assert len(checksum) == 64
    mounts = {m["name"]: m for m in gw["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["webhook-gateway-secrets"]["readOnly"] is True
    assert "secretName" in volumes["webhook-gateway-secrets"]["secret"]
    secret_dir = mounts["webhook-gateway-secrets"]["mountPath"]
    files = [s for p in config["providers"].values() for s in p["secrets"]]
    assert files and all(s.startswith(f"file:{secret_dir}/") for s in files), "secrets are files, not env"
    assert not any("secretKeyRef" in json.dumps(e) for e in gw.get("env", []))


def test_config_checksum_follows_the_config() -> None:
    a = pod_of(rendered("standalone-values.yaml"))["metadata"]["annotations"]["checksum/webhook-gateway-config"]
    b = pod_of(rendered("standalone-values.yaml", "config.logging.level=debug"))
    assert b["metadata"]["annotations"]["checksum/webhook-gateway-config"] != a


def test_sidecar_is_a_classic_container_after_the_api() -> None:
    """docs/deployment.md, "Sidecar ordering": the API must outlive the gateway, so the gateway is
    an ordinary container (native sidecars stop after the main containers) and the API sleeps
    in preStop for at least the gateway's drain."""
    docs = rendered("example")
    pod = pod_of(docs)
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["api", "webhook-gateway"]
    assert "initContainers" not in pod["spec"]
    api = pod["spec"]["containers"][0]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    shutdown = yaml.safe_load(configmap["data"]["gateway.yaml"])["shutdown"]
    assert api["lifecycle"]["preStop"]["sleep"]["seconds"] >= shutdown["drain_delay"] + shutdown["timeout"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > api["lifecycle"]["preStop"]["sleep"]["seconds"]


@pytest.mark.parametrize(
    ("sets", "kind", "present"),
    [
        ((), "PodDisruptionBudget", True),
        (("podDisruptionBudget.enabled=false",), "PodDisruptionBudget", False),
        ((), "NetworkPolicy", False),
        (("networkPolicy.enabled=true",), "NetworkPolicy", True),
        ((), "Ingress", False),
        ((), "ConfigMap/dashboard", False),
    ],
)
def test_toggles(sets: tuple[str, ...], kind: str, present: bool) -> None:
    assert (kind in kinds(rendered("", *sets))) is present


@pytest.mark.parametrize(("sets", "spec"), [
    ((), {"maxUnavailable": 1}),
    (("podDisruptionBudget.maxUnavailable=0",), {"maxUnavailable": 0}),  # it rendered 1: `default` took 0 for unset
    (("podDisruptionBudget.minAvailable=1",), {"minAvailable": 1}),
])  # fmt: skip
def test_pdb_takes_the_values_given(sets: tuple[str, ...], spec: dict[str, int]) -> None:
    (pdb,) = [d for d in rendered("", *sets) if d["kind"] == "PodDisruptionBudget"]
    assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == spec


def test_ingress_routes_only_the_webhook_paths() -> None:
    (ingress,) = [d for d in rendered("standalone-values.yaml") if d["kind"] == "Ingress"]
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert {p["pathType"] for p in paths} == {"Exact"}
    assert sorted(p["path"] for p in paths) == ["/payments/api/webhooks/stripe", "/payments/api/webhooks/stripe/"]


def test_grafana_dashboard_configmap() -> None:
    (cm,) = [d for d in rendered("grafana-values.yaml") if d["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(cm["data"]["webhook-gateway.json"])
    assert dashboard == json.loads((hd.ROOT / "deploy" / "grafana" / "webhook-gateway.json").read_text("utf-8"))


def test_chart_copies_are_the_deploy_files() -> None:
    ours = hd.CHART / "files" / "webhook-gateway.json"
    assert ours.read_text("utf-8") == (hd.ROOT / "deploy" / "grafana" / "webhook-gateway.json").read_text("utf-8")


def test_prometheus_rule_runbook_links_can_be_repointed() -> None:
    (rule,) = [d for d in rendered("monitoring-values.yaml") if d["kind"] == "PrometheusRule"]
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls and all(u.startswith("https://wiki.example.com/runbooks/webhook-gateway#") for u in urls)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"), "choose one way to scrape"),
        (("metrics.podMonitor.enabled=true", "metrics.podAnnotations=true"), "choose one way to scrape"),
        (("workers=0",), "workers"),
        (("config.upstream.mode=async",), "mode"),
        (("terminationGracePeriodSeconds=10",), "terminationGracePeriodSeconds"),
        (("config.listen.port=8080", "config.listen.metrics_port=8080"), "metrics_port"),
    ],
)
def test_refused(sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        hd.helm_template(sets=list(sets))


def test_top_level_enabled_is_accepted() -> None:
    """A parent chart's `condition: webhook-gateway.enabled` puts `enabled` in these values."""
    assert rendered("", "enabled=true")


def test_chart_readme_lists_every_top_level_value() -> None:
    readme = (hd.CHART / "README.md").read_text("utf-8")
    values = yaml.safe_load((hd.CHART / "values.yaml").read_text("utf-8"))
    missing = [key for key in values if f"`{key}" not in readme]
    assert missing == []
    assert Path(hd.CHART / "ci").is_dir()


def test_the_docs_show_what_the_sidecar_example_renders() -> None:
    doc = (hd.ROOT / "docs" / "deployment.md").read_text("utf-8")
    start = doc.index("What `helm template pay helm/examples/payments-api --namespace payments` renders")
    opening = doc.index("```yaml\n", start) + len("```yaml\n")
    block = doc[opening : doc.index("\n```", opening)]
    assert block.strip() == hd.render_example("pay").strip(), "regenerate the block in docs/deployment.md"


def test_separate_metrics_port() -> None:
    docs = rendered("metrics-port-values.yaml")
    gw = gateway_container(pod_of(docs))
    assert {p["name"]: p["containerPort"] for p in gw["ports"]} == {"gateway-http": 8080, "gateway-metrics": 9090}
    (service,) = [d for d in docs if d["kind"] == "Service"]
    ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {"http": "gateway-http", "metrics": "gateway-metrics"}
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    pod_monitor = rendered("", "config.listen.metrics_port=9090", "metrics.podMonitor.enabled=true")
    (pm,) = [d for d in pod_monitor if d["kind"] == "PodMonitor"]
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "gateway-metrics"


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


MONITORED = ["monitoring-values.yaml", "metrics-port-values.yaml", "example", "sidecar-values.yaml"]


@pytest.mark.parametrize("values", MONITORED)
def test_monitors_and_services_select_what_they_should(values: str) -> None:
    """The CRDs have no schema in kubernetes-validate: their selectors are checked here instead."""
    docs = rendered(values)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    pods = [pod_of(docs)["metadata"]["labels"]] if "Deployment" in by_kind else []
    for service in by_kind.get("Service", []):
        for labels in pods:
            assert _labels_match(service["spec"]["selector"], labels), "the Service selects the gateway's pods"
    for monitor in by_kind.get("ServiceMonitor", []):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        (service,) = by_kind["Service"]
        assert _labels_match(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= names
    for monitor in by_kind.get("PodMonitor", []):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        for labels in pods:
            assert _labels_match(monitor["spec"]["selector"]["matchLabels"], labels)
            container_ports = {p["name"] for p in gateway_container(pod_of(docs))["ports"]}
            assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= container_ports
    assert by_kind.get("ServiceMonitor") or by_kind.get("PodMonitor")
