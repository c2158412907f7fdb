"""OpenTelemetry: one server span per webhook, a child span per stage, ``traceparent`` upstream.

Off by default; when off, a fresh W3C ``traceparent`` is still sent so the upstream can
correlate its logs with ours (the gateway logs the same trace id).
"""

from __future__ import annotations

import random
from typing import Any

from gateway.settings.model import TracingSettings


def new_traceparent() -> str:
    """A W3C traceparent with fresh random ids (not a secret: the fast PRNG is enough). Both ids
    come from one 192-bit draw, with the lowest bit of each set so neither is the invalid all-zero."""
    ids = f"{random.getrandbits(192) | _NONZERO:048x}"
    return f"00-{ids[:32]}-{ids[32:]}-00"


_NONZERO = 1 | 1 << 64


def make_tracer(settings: TracingSettings) -> Any:
    """An SDK tracer exporting to the configured exporter, or None when tracing is off."""
    if not settings.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:  # an optional extra: pip install webhook-gateway[otlp]
            raise RuntimeError("tracing.exporter otlp needs: pip install 'webhook-gateway[otlp]'") from exc
        exporter: Any = OTLPSpanExporter(endpoint=settings.endpoint or None)
    else:
        exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("webhook-gateway")


def current_traceparent() -> str:
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "") or new_traceparent()
