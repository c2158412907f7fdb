"""Stage 9 (queue mode): answer 202 only once the event is committed to PostgreSQL.

Inserts from concurrent requests share one transaction (group commit). A store failure is 503,
so the provider retries: never a 4xx, which would make it give up on an event we do not have.
Text the database cannot hold (a NUL in the id, a header that is not UTF-8) is stored escaped
(``gateway.escape``). Should the database still refuse one record's data, a retry of the
same bytes could never succeed: that is a 400, and its batch-mates are stored regardless.
"""

from __future__ import annotations

from gateway.delivery import Delivery
from gateway.errors import Rejection, StoreError, UnstorableEvent
from gateway.events.base import EventStore
from gateway.outcomes import EventStatus, Outcome
from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.record import record_from


class Enqueue:
    name = "enqueue"

    def __init__(self, events: EventStore, delivery: Delivery, redact_headers: tuple[str, ...]) -> None:
        self.events = events
        self.delivery = delivery
        self.redact_headers = redact_headers

    async def __call__(self, ctx: RequestContext) -> None:
        leased = self.delivery.reserve()  # a free delivery slot: store it leased, deliver after commit
        epoch = self.events.claims_epoch  # the holder session the lease is written under
        stored = False
        try:  # from here on, every way out gives the slot back unless the event was stored
            record = record_from(
                ctx,
                EventStatus.DELIVERING if leased else EventStatus.QUEUED,
                redact_envelope=False,
                redact_headers=self.redact_headers,
                lease=self.delivery.settings.lease,
            )
            stored = await self.events.insert(record)
        except StoreError:
            retry = {"Retry-After": "5"}
            raise Rejection("store_unavailable", "the event store is unavailable; retry later", retry) from None
        except UnstorableEvent:
            raise Rejection("invalid_body", "the event id or type cannot be stored (e.g. it contains NUL)") from None
        finally:
            if leased and not stored:
                self.delivery.unreserve()
        if not stored:  # the table already has this event id: a copy that outlived the dedup store
            body = {"success": True, "status": Outcome.DUPLICATE, "event_id": ctx.event_id}
            ctx.reply = Reply(200, Outcome.DUPLICATE, body)
            return
        if leased:
            self.delivery.dispatch(record, epoch)
        else:
            self.delivery.notify()
        ctx.reply = Reply(202, Outcome.QUEUED, {"success": True, "status": Outcome.QUEUED, "event_id": ctx.event_id})
