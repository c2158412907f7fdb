"""OpenTelemetry: one server span per webhook, a child span per stage, traceparent to the upstream."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from helpers_services import eventually
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import build_app, build_services
from gateway.pipeline.runner import PIPELINE
from gateway.tracing import make_tracer


def traced_app(settings):
    """The app with an SDK tracer that keeps finished spans in memory."""
    services = build_services(settings)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    services.tracer = provider.get_tracer("test")
    return build_app(settings, services), exporter


async def test_a_webhook_is_one_server_span_with_a_child_per_stage(aiohttp_client, make_settings, upstream, kit):
    settings = make_settings()
    app, exporter = traced_app(settings)
    client = await aiohttp_client(app)

    body = kit.stripe_body("evt_traced")
    from gateway.providers.signer import sign

    headers = sign(settings.providers["stripe"], body, settings.webhook_url("stripe"))
    resp = await client.post("/payments/api/webhooks/stripe/", data=body, headers=headers)
    assert resp.status == 200

    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "webhook")
    stages = [s.name for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
    assert stages == [f"stage.{stage.name}" for stage in app[PIPELINE].stages]
    assert stages[0] == "stage.route" and stages[-1] == "stage.forward"
    assert root.attributes["webhook.provider"] == "stripe"
    assert root.attributes["webhook.event_id"] == "evt_traced"

    traceparent = upstream.events[-1].headers["traceparent"]
    _version, trace_id, _span_id, flags = traceparent.split("-")
    assert int(trace_id, 16) == root.context.trace_id
    assert int(flags, 16) & 1  # sampled


async def test_a_rejected_webhook_still_ends_its_span(aiohttp_client, make_settings):
    app, exporter = traced_app(make_settings())
    client = await aiohttp_client(app)
    resp = await client.post("/payments/api/webhooks/stripe/", data=b"{}")
    assert resp.status == 401
    names = [s.name for s in exporter.get_finished_spans()]
    assert "webhook" in names and "stage.verify" in names and "stage.forward" not in names


def test_tracing_is_off_unless_configured(make_settings):
    assert make_tracer(make_settings().tracing) is None


# --------------------------------------------------------------------------- the OTLP exporter, for real


def _otlp_modules():
    """The ``otlp`` extra (installed by ``make test``): its absence fails the test, it never skips it."""
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter  # noqa: F401
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    except ImportError as exc:
        pytest.fail(f"the otlp extra is not installed ({exc}): pip install -e '.[otlp]' (make test does)")
    return trace_service_pb2


async def test_spans_reach_an_otlp_http_receiver(
    aiohttp_server, aiohttp_client, make_settings, upstream, kit, monkeypatch
):
    """``tracing: {enabled: true, exporter: otlp}`` as configured: the SDK's OTLP/HTTP exporter
    posts protobuf to a loopback receiver this test runs, as it would to an OpenTelemetry Collector."""
    pb = _otlp_modules()
    received: list[Any] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = pb.ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(
            body=pb.ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", traces)
    server = await aiohttp_server(receiver)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the batch processor's export period, in ms
    settings = make_settings(
        tracing={
            "enabled": True,
            "exporter": "otlp",
            "endpoint": str(server.make_url("/v1/traces")),
            "service_name": "gw-otlp-test",
        }
    )
    client = await aiohttp_client(build_app(settings))  # build_services -> make_tracer: the real path
    body = kit.stripe_body("evt_otlp")
    from gateway.providers.signer import sign

    resp = await client.post(
        "/payments/api/webhooks/stripe/",
        data=body,
        headers=sign(settings.providers["stripe"], body, settings.webhook_url("stripe")),
    )
    assert resp.status == 200

    def exported() -> list[Any]:
        return [s for m in received for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans]

    await eventually(lambda: any(s.name == "stage.forward" for s in exported()))
    spans = exported()
    root = next(s for s in spans if s.name == "webhook")
    attributes = {a.key: a.value.string_value for a in root.attributes}
    assert attributes["webhook.provider"] == "stripe" and attributes["webhook.event_id"] == "evt_otlp"
    assert {s.name for s in spans if s.parent_span_id == root.span_id} >= {
        "stage.route",
        "stage.verify",
        "stage.forward",
    }
    resource = {a.key: a.value.string_value for a in received[0].resource_spans[0].resource.attributes}
    assert resource["service.name"] == "gw-otlp-test"
    trace_id = upstream.events[-1].headers["traceparent"].split("-")[1]
    assert root.trace_id.hex() == trace_id  # the span the upstream was told about is the one exported
