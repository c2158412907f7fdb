"""Build the stored record of an accepted webhook from the request context."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.events.base import EventRecord
from gateway.events.redact import redact_body, redact_event, stored_headers
from gateway.pipeline.context import RequestContext


def record_from(ctx: RequestContext, status: str, redact_envelope: bool) -> EventRecord:
    """``redact_envelope``: mask the envelope too (it was delivered already, sync mode); a queued
    envelope is kept whole until delivered, then the worker stores its redacted form."""
    provider = ctx.provider
    assert provider is not None
    now = datetime.now(UTC)
    return EventRecord(
        provider=provider.name,
        event_id=ctx.event_id,
        event_type=ctx.event_type,
        received_at=now,
        status=status,
        headers=stored_headers(ctx.request.headers, provider.signature.header if provider.signature else None),
        body=redact_body(ctx.body, provider.redact),
        event=redact_event(ctx.event, provider.redact) if redact_envelope else ctx.event,
        client_ip=ctx.client_ip,
        next_attempt_at=now if status == "queued" else None,
        delivered_at=now if status == "delivered" else None,
        attempts=1 if status == "delivered" else 0,
    )
