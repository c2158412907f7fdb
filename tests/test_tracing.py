"""OpenTelemetry: one server span per webhook, a child span per stage, traceparent to the upstream."""

from __future__ import annotations

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
