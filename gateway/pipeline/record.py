"""Build the stored record of an accepted webhook from the request context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.escape import storable
from gateway.events.base import EventRecord
from gateway.outcomes import EventStatus
from gateway.pipeline.context import RequestContext
from gateway.redact import redact_body, redact_event, stored_headers

# Members bound once: reading ``EventStatus.X`` costs an enum lookup each time on Python 3.11.
_QUEUED, _DELIVERING, _DELIVERED = EventStatus.QUEUED, EventStatus.DELIVERING, EventStatus.DELIVERED


def record_from(
    ctx: RequestContext,
    status: EventStatus,
    redact_envelope: bool,
    redact_headers: tuple[str, ...],
    lease: float = 0.0,
) -> EventRecord:
    """Text the database cannot hold (NUL, bytes that are not UTF-8) is stored escaped, never
    refused: the event was verified and is delivered as it came (``gateway.escape``).
    ``redact_headers``: the header-name patterns masked besides credentials (settings).
    ``redact_envelope``: mask the envelope too (it was delivered already, sync mode); a queued
    envelope is kept whole until delivered, then the worker stores its redacted form.
    ``delivering``: stored already leased for ``lease`` seconds to this process, which delivers
    it straight after the commit (no claim query); if the process dies, the lease runs out and
    any replica picks it up."""
    provider = ctx.provider
    assert provider is not None
    now = datetime.now(UTC)
    return EventRecord(
        provider=provider.name,
        event_id=storable(ctx.event_id),
        event_type=storable(ctx.event_type),
        received_at=now,
        status=status,
        headers=stored_headers(
            ctx.request.headers, provider.signature.header if provider.signature else None, redact_headers
        ),
        body=redact_body(ctx.body, provider.redact),
        event=redact_event(ctx.event, provider.redact) if redact_envelope else ctx.event,
        client_ip=ctx.client_ip,
        next_attempt_at=now if status in (_QUEUED, _DELIVERING) else None,
        locked_until=now + timedelta(seconds=lease) if status == _DELIVERING else None,
        delivered_at=now if status == _DELIVERED else None,
        attempts=1 if status in (_DELIVERED, _DELIVERING) else 0,
        secret_index=ctx.secret_index if ctx.secret_index >= 0 else None,
        delivery_attempts=ctx.attempts or [],
    )
