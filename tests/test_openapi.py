"""The OpenAPI contract (``gateway/openapi.yaml``) against the app that serves it.

The contract cannot drift from the code unnoticed:

* the document is valid OpenAPI 3.1, and its version is the package's;
* its operations are exactly the routes of ``build_app`` (method and canonical path; the
  webhook's ``*`` route counts as POST, and the HEAD routes aiohttp adds for every GET are
  implied by that GET, as the document's description says);
* the ``ErrorCode`` enum is exactly ``gateway.errors.ERROR_STATUS``, and every error example
  sits under the HTTP status of its code;
* real responses of a running gateway (the embedded demo config, with a loopback upstream that
  answers 204) validate against the schemas documented for their operation and status, and the
  CloudEvent the upstream receives validates against the documented ``CloudEvent``;
* docs/metrics.md lists exactly the metrics ``gateway.metrics.Metrics`` registers, with their
  types and labels.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.metrics import MetricWrapperBase

from gateway import __version__
from gateway.app import build_app
from gateway.errors import ERROR_STATUS
from gateway.metrics import Metrics
from gateway.providers.parse import ALGORITHMS
from gateway.providers.signer import sample_event, sign
from gateway.settings.loader import load_config
from gateway.settings.model import Settings

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "gateway" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_FILE.read_text("utf-8"))
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
API = "/payments/api/webhooks"
DEMO_API_KEY = "demo-api-key"  # management.api_keys of the embedded demo config
#: Error codes no operation can document: ``not_found`` answers paths that match no route at
#: all; ``shutting_down`` is only a metric/log outcome (a request cut off by shutdown gets no
#: answer). Both are described in the ErrorCode schema.
UNDOCUMENTABLE_CODES = {"not_found", "shutting_down"}


# --------------------------------------------------------------------------- spec helpers


def deref(node: Any) -> Any:
    """Follow local ``$ref`` pointers (``#/components/...``) until a real node."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        node = SPEC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def spec_operations() -> set[tuple[str, str]]:
    ops = set()
    for path, item in SPEC["paths"].items():
        for method in HTTP_METHODS:
            if method in deref(item):
                ops.add((method.upper(), path))
    return ops


def app_operations(app: web.Application) -> set[tuple[str, str]]:
    ops = set()
    for route in app.router.routes():
        if route.resource is not None and route.resource.canonical == "/{tail}":
            continue  # the catch-all that answers JSON 404/405 for everything unrouted
        if route.resource is not None and route.resource.canonical.startswith("/payments/admin/"):
            continue  # the staff dashboard: a browser UI behind a session, not the API (see info.description)
        method = "POST" if route.method == "*" else route.method
        ops.add((method, route.resource.canonical))
    # aiohttp's add_get adds a HEAD route too: the GET operation documents both.
    return {(m, p) for m, p in ops if not (m == "HEAD" and ("GET", p) in ops)}


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A 2020-12 validator for ``schema`` whose ``#/components/...`` references resolve."""
    root = {**schema, "components": SPEC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check(instance: Any, schema: dict[str, Any], what: str) -> None:
    errors = sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, f"{what}: " + "; ".join(f"{e.json_path}: {e.message}" for e in errors[:5])


def walk_responses() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, status, resolved response) for every documented response."""
    out = []
    for path, item in SPEC["paths"].items():
        item = deref(item)
        for method in HTTP_METHODS:
            if method in item:
                for status, response in item[method]["responses"].items():
                    out.append((method.upper(), path, status, deref(response)))
    return out


def media_examples(media: dict[str, Any]) -> list[tuple[str, Any]]:
    found = [(name, deref(ex)["value"]) for name, ex in media.get("examples", {}).items()]
    if "example" in media:
        found.append(("example", media["example"]))
    return found


async def conforms(resp: ClientResponse, method: str, path: str) -> Any:
    """Check ``resp`` against the documented operation; returns the decoded body."""
    operation = deref(SPEC["paths"][path])[method.lower()]
    documented = operation["responses"].get(str(resp.status))
    assert documented is not None, f"{method} {path} answered {resp.status}, which is not documented"
    documented = deref(documented)
    media = documented.get("content", {}).get(resp.content_type)
    assert media is not None, f"{method} {path} {resp.status}: {resp.content_type} is not documented"
    for header in documented.get("headers", {}):
        if header == "Allow":  # always sent with 405; Retry-After is conditional for some codes
            assert header in resp.headers, f"{method} {path} {resp.status}: no {header} header"
    if resp.content_type != "application/json":
        return await resp.read()
    body = await resp.json()
    check(body, media["schema"], f"{method} {path} {resp.status}")
    return body


def schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# --------------------------------------------------------------------------- the document


def test_spec_is_valid_openapi_3_1() -> None:
    validate_openapi(SPEC)
    assert SPEC["openapi"].startswith("3.1.")
    assert SPEC["info"]["version"] == __version__


def test_api_symlink_is_the_served_file() -> None:
    link = ROOT / "api" / "openapi.yaml"
    assert link.is_symlink(), "api/openapi.yaml must be a symlink to gateway/openapi.yaml"
    assert not Path(link.readlink()).is_absolute(), "the symlink must be relative"
    assert link.resolve() == SPEC_FILE.resolve()


def test_every_route_is_documented_and_nothing_more() -> None:
    app = build_app(load_config(None))
    in_app, in_spec = app_operations(app), spec_operations()
    assert not in_app - in_spec, f"routes missing from gateway/openapi.yaml: {sorted(in_app - in_spec)}"
    assert not in_spec - in_app, f"documented operations the app does not serve: {sorted(in_spec - in_app)}"


def test_operation_ids_are_unique_and_management_is_secured() -> None:
    ids = []
    for path, item in SPEC["paths"].items():
        for method in HTTP_METHODS:
            operation = deref(item).get(method)
            if operation is None:
                continue
            ids.append(operation["operationId"])
            public = not path.startswith(API) or path.startswith(f"{API}/{{provider}}")
            if public:
                assert "security" not in operation, f"{method} {path} needs no credentials"
            else:
                schemes = {name for requirement in operation["security"] for name in requirement}
                assert schemes == {"ApiKeyHeader", "BearerAuth"}, f"{method} {path}: {schemes}"
                assert "401" in operation["responses"], f"{method} {path} must document 401"
    assert len(ids) == len(set(ids))


def test_error_code_enum_is_the_closed_set() -> None:
    enum = SPEC["components"]["schemas"]["ErrorCode"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == set(ERROR_STATUS)


def test_error_examples_sit_under_the_status_of_their_code() -> None:
    documented = set()
    for method, path, status, response in walk_responses():
        for ctype, media in response.get("content", {}).items():
            for name, value in media_examples(media):
                check(value, media["schema"], f"{method} {path} {status} {ctype} example {name}")
                if isinstance(value, dict) and value.get("success") is False:
                    code = value["error"]["code"]
                    assert str(ERROR_STATUS[code]) == status, f"{method} {path}: {code} is not a {status}"
                    documented.add(code)
    assert documented | UNDOCUMENTABLE_CODES == set(ERROR_STATUS), (
        f"codes no response documents: {sorted(set(ERROR_STATUS) - documented - UNDOCUMENTABLE_CODES)}"
    )


def test_signature_algorithm_enum_matches_the_parser() -> None:
    enum = SPEC["components"]["schemas"]["Provider"]["properties"]["signature_algorithm"]["enum"]
    assert set(enum) == {name.upper() for name in ALGORITHMS} | {"none"}


# --------------------------------------------------------------------------- a running gateway


@dataclasses.dataclass
class Sink:
    """The upstream: records each delivery and answers 204."""

    url: str = ""
    deliveries: list[tuple[dict[str, str], bytes]] = dataclasses.field(default_factory=list)

    async def receive(self, request: web.Request) -> web.Response:
        self.deliveries.append((dict(request.headers), await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def sink(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Sink:
    found = Sink()
    app = web.Application()
    app.router.add_post("/events", found.receive)
    server = await aiohttp_server(app)
    found.url = str(server.make_url("/events"))
    return found


@pytest.fixture
def settings(sink: Sink) -> Settings:
    demo = load_config(None)
    return dataclasses.replace(demo, upstream=dataclasses.replace(demo.upstream, url=sink.url))


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings) -> TestClient:
    return await aiohttp_client(build_app(settings))


def signed_stripe(settings: Settings) -> tuple[bytes, dict[str, str]]:
    provider = settings.providers["stripe"]
    body, extra = sample_event(provider)
    return body, sign(provider, body, settings.webhook_url("stripe"), headers=extra)


async def test_providers(client: TestClient, settings: Settings) -> None:
    resp = await client.get(f"{API}/providers/", headers={"X-API-Key": DEMO_API_KEY})
    body = await conforms(resp, "GET", f"{API}/providers/")
    assert resp.status == 200
    assert [p["name"] for p in body["providers"]] == list(settings.providers)


async def test_health_with_a_bearer_key(client: TestClient) -> None:
    resp = await client.get(f"{API}/health/", headers={"Authorization": f"Bearer {DEMO_API_KEY}"})
    body = await conforms(resp, "GET", f"{API}/health/")
    assert resp.status == 200
    assert body["status"] == "healthy"


async def test_forwarded_duplicate_and_the_upstream_event(client: TestClient, settings: Settings, sink: Sink) -> None:
    body, headers = signed_stripe(settings)
    path = f"{API}/{{provider}}/"

    first = await client.post(f"{API}/stripe/", data=body, headers=headers)
    sent = await conforms(first, "POST", path)
    assert (first.status, sent["status"]) == (200, "forwarded")

    again = await client.post(f"{API}/stripe/", data=body, headers=headers)
    dup = await conforms(again, "POST", path)
    assert (again.status, dup["status"], dup["event_id"]) == (200, "duplicate", sent["event_id"])

    assert len(sink.deliveries) == 1
    upstream_headers, raw = sink.deliveries[0]
    delivery = deref(SPEC["webhooks"]["cloudEvent"])["post"]
    media = delivery["requestBody"]["content"]
    assert upstream_headers["Content-Type"] in media
    traceparent = next(p for p in delivery["parameters"] if p["name"] == "traceparent")
    check(upstream_headers["traceparent"], traceparent["schema"], "traceparent")
    event = json.loads(raw)
    check(event, media[upstream_headers["Content-Type"]]["schema"], "the CloudEvent")
    assert event["id"] == sent["event_id"]
    assert raw.endswith(b',"payload":' + body + b"}}"), "the payload is spliced in byte for byte"


async def test_without_trailing_slash(client: TestClient, settings: Settings) -> None:
    body, headers = signed_stripe(settings)
    resp = await client.post(f"{API}/stripe", data=body, headers=headers)
    assert (await conforms(resp, "POST", f"{API}/{{provider}}"))["status"] == "forwarded"


async def test_stats_after_traffic(client: TestClient, settings: Settings) -> None:
    body, headers = signed_stripe(settings)
    for _ in range(2):
        await client.post(f"{API}/stripe/", data=body, headers=headers)
    await client.post(f"{API}/stripe/", data=b"{}")  # unsigned: 401
    resp = await client.get(f"{API}/stats/", params={"days": "3"}, headers={"X-API-Key": DEMO_API_KEY})
    stats = await conforms(resp, "GET", f"{API}/stats/")
    assert len(stats["daily"]) == 3
    assert stats["totals"]["outcomes"] == {"forwarded": 1, "duplicate": 1, "missing_signature": 1}

    bad = await client.get(f"{API}/stats/", params={"days": "0"}, headers={"X-API-Key": DEMO_API_KEY})
    assert (await conforms(bad, "GET", f"{API}/stats/"))["error"]["code"] == "invalid_parameter"


async def test_events_log(client: TestClient, settings: Settings) -> None:
    body, headers = signed_stripe(settings)
    await client.post(f"{API}/stripe/", data=body, headers=headers)
    key = {"X-API-Key": DEMO_API_KEY}
    page = await conforms(await client.get(f"{API}/events/", headers=key), "GET", f"{API}/events/")
    record_id = page["events"][0]["id"]
    shown = await client.get(f"{API}/events/{record_id}/", headers=key)
    detail = await conforms(shown, "GET", f"{API}/events/{{id}}/")
    assert detail["event"]["headers"]["Stripe-Signature"] == "[REDACTED]"
    missing = await client.get(f"{API}/events/999999/", headers=key)
    assert (await conforms(missing, "GET", f"{API}/events/{{id}}/"))["error"]["code"] == "not_found"
    replayed = await client.post(f"{API}/events/{record_id}/replay/", headers=key)
    assert (await conforms(replayed, "POST", f"{API}/events/{{id}}/replay/"))["status"] == "forwarded"
    dead = await client.get(f"{API}/dead-letters/", headers=key)
    assert (await conforms(dead, "GET", f"{API}/dead-letters/"))["events"] == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "send an API key in X-API-Key or Authorization: Bearer"),
        ({"X-API-Key": "not-the-key"}, "the API key is not valid"),
        ({"Authorization": "Bearer not-the-key"}, "the API key is not valid"),
    ],
)
async def test_management_401(client: TestClient, headers: dict[str, str], message: str) -> None:
    resp = await client.get(f"{API}/providers/", headers=headers)
    body = await conforms(resp, "GET", f"{API}/providers/")
    assert resp.status == 401
    assert body["error"] == {"code": "unauthorized", "message": message}


async def test_webhook_errors(client: TestClient) -> None:
    path = f"{API}/{{provider}}/"
    unsigned = await client.post(f"{API}/stripe/", data=b"{}", headers={"Content-Type": "application/json"})
    assert (await conforms(unsigned, "POST", path))["error"]["code"] == "missing_signature"
    unknown = await client.post(f"{API}/no-such-provider/", data=b"{}")
    assert (await conforms(unknown, "POST", path))["error"]["code"] == "unknown_provider"
    wrong_method = await client.get(f"{API}/stripe/")
    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "POST"
    check(await wrong_method.json(), schema("Error"), "405")


async def test_unknown_path_is_a_json_404(client: TestClient) -> None:
    resp = await client.get("/no/such/path")
    assert resp.status == 404
    body = await resp.json()
    check(body, schema("Error"), "404")
    assert body["error"]["code"] == "not_found"


async def test_operations_endpoints(client: TestClient) -> None:
    assert (await conforms(await client.get("/healthz"), "GET", "/healthz")) == {"status": "alive"}
    ready = await conforms(await client.get("/readyz"), "GET", "/readyz")
    assert ready["ready"] is True
    metrics = await client.get("/metrics")
    text = (await conforms(metrics, "GET", "/metrics")).decode()
    assert "webhook_gateway_requests_total" in text
    served = await client.get("/openapi.yaml")
    assert await conforms(served, "GET", "/openapi.yaml") == SPEC_FILE.read_bytes()
    head = await client.head("/healthz")
    assert head.status == 200


# --------------------------------------------------------------------------- docs/metrics.md

METRICS_DOC = ROOT / "docs" / "metrics.md"
ROW = re.compile(r"^\|\s*`(webhook_gateway_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", re.M)
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count", "_created"), "counter": ("_created",)}


def registered_metrics() -> dict[str, tuple[str, set[str]]]:
    """Exposed name -> (type, label names) for every metric ``Metrics`` registers."""
    metrics = Metrics()
    out = {}
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            (family,) = collector.collect()
            name = f"{family.name}_total" if family.type == "counter" else family.name
            out[name] = (family.type, set(collector._labelnames))
    assert out, "Metrics registers nothing?"
    return out


def test_metrics_doc_lists_every_metric_with_type_and_labels() -> None:
    text = METRICS_DOC.read_text("utf-8")
    rows = {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in ROW.findall(text)}
    assert rows == registered_metrics()


def test_metrics_doc_names_no_metric_that_does_not_exist() -> None:
    known = registered_metrics()
    allowed = set(known)
    for name, (kind, _) in known.items():
        base = name.removesuffix("_total") if kind == "counter" else name
        allowed |= {base + suffix for suffix in SUFFIXES.get(kind, ())}
    mentioned = set(re.findall(r"\bwebhook_gateway_[a-z0-9_]+", METRICS_DOC.read_text("utf-8")))
    assert mentioned - allowed == set(), f"docs/metrics.md names unknown metrics: {sorted(mentioned - allowed)}"
