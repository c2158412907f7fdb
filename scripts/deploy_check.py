"""`make deploy-check`: the chart and the alert rules through the real tools, saying what was checked.

  helm lint --strict (the chart alone and with each ci/*-values.yaml)
  helm template for every ci/*-values.yaml and the example host chart; every object validated with
      kubernetes-validate (strict) for each of $K8S_VERSIONS; CRD kinds listed as not validated
  values.schema.json refuses a bad value (helm template --set workers=0 must fail)
  promtool check rules, promtool test rules (deploy/prometheus/alerts_test.yaml)
  the Grafana dashboard: a unit on every panel, rates over $__rate_interval, a datasource variable

Exits non-zero on the first kind of failure after printing every problem found.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import helpers_deploy as hd


def check_chart() -> list[str]:
    problems = []
    lint = hd.run([hd.helm_path(), "lint", "--strict", str(hd.CHART)])
    print(f"helm lint --strict {hd.CHART.relative_to(hd.ROOT)}: {'ok' if lint.returncode == 0 else 'FAILED'}")
    if lint.returncode:
        problems.append(lint.stdout + lint.stderr)
    sources = {p.name: (lambda p=p: hd.helm_template([p])) for p in sorted((hd.CHART / "ci").glob("*-values.yaml"))}
    sources["examples/payments-api (sidecar host chart)"] = hd.render_example
    for name, render in sources.items():
        try:
            docs = hd.documents(render())
        except RuntimeError as exc:
            problems.append(f"{name}: helm template failed: {exc}")
            continue
        kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        crds = sorted(d["kind"] for d in docs if d["kind"] in hd.CRD_KINDS)
        found = [p for version in hd.K8S_VERSIONS for p in hd.validate(docs, version)]
        problems += found
        state = "ok" if not found else f"{len(found)} problem(s)"
        print(f"helm template -f {name}: {len(docs)} objects {kinds}")
        print(f"  kubernetes-validate --strict on {', '.join(hd.K8S_VERSIONS)}: {state}"
              + (f" (not validated, CRDs: {', '.join(crds)})" if crds else ""))  # fmt: skip
    try:
        hd.helm_template(sets=["workers=0"])
        problems.append("values.schema.json accepted workers=0")
    except RuntimeError as exc:
        print(f"values.schema.json refuses workers=0: ok ({str(exc).splitlines()[-1][:100]})")
    return problems


def check_rules() -> list[str]:
    promtool = hd.promtool_path()
    problems = []
    check = hd.run([promtool, "check", "rules", str(hd.RULES)])
    print(f"promtool check rules {hd.RULES.relative_to(hd.ROOT)}: {check.stdout.strip().splitlines()[-1]}")
    if check.returncode:
        problems.append(check.stdout + check.stderr)
    test = hd.promtool_test()
    verdict = "SUCCESS" if test.returncode == 0 else "FAILED"
    print(f"promtool test rules {hd.RULE_TESTS.relative_to(hd.ROOT)}: {verdict}")
    if test.returncode:
        problems.append(test.stdout + test.stderr)
    return problems


def check_dashboard() -> list[str]:
    """The static half of tests/test_dashboard.py (which also checks a real scrape and empty panels)."""
    data = json.loads((hd.ROOT / "deploy" / "grafana" / "webhook-gateway.json").read_text("utf-8"))
    panels = [p for p in data["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    unitless = [p["title"] for p in panels if not p["fieldConfig"]["defaults"].get("unit")]
    problems = [f"dashboard: panel {title!r} has no unit" for title in unitless]
    windows = {w for e in exprs for w in re.findall(r"\b(?:rate|irate)\([^\[]*\[([^\]]+)\]", e)}
    problems += [f"dashboard: a rate over [{w}], not [$__rate_interval]" for w in windows - {"$__rate_interval"}]
    variables = {v["name"]: v.get("type") for v in data["templating"]["list"]}
    if variables.get("datasource") != "datasource":
        problems.append("dashboard: no datasource template variable")
    print(f"dashboard deploy/grafana/webhook-gateway.json: {len(panels)} panels, {len(exprs)} queries; units, "
          f"$__rate_interval, datasource variable: {'ok' if not problems else 'FAILED'}")  # fmt: skip
    return problems


def main() -> int:
    try:
        problems = check_chart() + check_rules() + check_dashboard()
    except hd.ToolMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
