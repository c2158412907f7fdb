"""Replay and dead-letter actions, shared by the management API and the dashboard.

Queue mode requeues (the delivery workers send, with their retries); sync mode sends now.
"""

from __future__ import annotations

from typing import Any

from gateway.app_state import Services
from gateway.errors import Rejection, StoreError
from gateway.events.attempts import Tries
from gateway.events.base import EventFilter, EventRecord
from gateway.outcomes import Outcome
from gateway.tracing import new_traceparent


async def replay_one(services: Services, record_id: int) -> dict[str, Any] | None:
    """Replay one stored event; None when there is no such event."""
    record = await services.events.get(record_id)
    if record is None:
        return None
    if services.delivery is not None:
        n = await services.events.requeue(EventFilter(limit=1), [record_id])
        services.delivery.notify()
        return {"status": Outcome.QUEUED if n else "in_flight", "id": record_id}
    after = max((a.number for a in record.delivery_attempts), default=record.attempts)
    await _send(services, record, after + 1)
    return {"status": Outcome.FORWARDED, "id": record_id}


async def replay_matching(services: Services, flt: EventFilter) -> dict[str, Any]:
    """Queue mode requeues every match; sync mode delivers up to ``flt.limit`` now, oldest
    first, stopping at the first failure (the forwarder's error propagates)."""
    if services.delivery is not None:
        n = await services.events.requeue(flt)
        services.delivery.notify()
        return {"status": Outcome.QUEUED, "count": n}
    delivered = 0
    for record in reversed(await services.events.list(flt)):
        await _send(services, record, record.attempts + 1)
        delivered += 1
    return {"status": Outcome.FORWARDED, "count": delivered}


async def _send(services: Services, record: EventRecord, number: int) -> None:
    """Sync mode: deliver ``record`` now; its tries join the event's timeline, failed or not."""
    tries = Tries(number)
    try:
        await services.forwarder.send(record.provider, record.event, new_traceparent(), tries)
    except Rejection:
        await _keep(services, record.id, tries)
        raise
    await _keep(services, record.id, tries)


async def _keep(services: Services, record_id: int, tries: Tries) -> None:
    try:
        await services.events.add_attempts(record_id, tries.items)
    except StoreError:  # the replay itself happened: its answer matters more than its record
        services.metrics.child(services.metrics.store_errors, "events", "attempts").inc()
