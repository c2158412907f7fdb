"""Queue mode: background delivery from the outbox, with retries, backoff and dead letters.

Workers claim due events (``FOR UPDATE SKIP LOCKED`` in PostgreSQL, so replicas never deliver the
same claim twice), deliver each through the shared ``Forwarder``, then mark it delivered, due again
after a backoff that honours the upstream's Retry-After, or dead after ``max_attempts``. A claim
belongs to its process's PostgreSQL session (``gateway/events/holder.py``): when the process dies,
the next claim by any worker takes its events over at once; ``lease`` is the backstop.

A process holds at most ``hold`` events (leased to it, queued for an upstream slot, on the wire, or
delivered and waiting for their verdict to be recorded), and at most ``concurrency`` of them are on
the wire at once. An event stays held until its verdict is recorded, so a kill repeats at most
``hold`` deliveries; the upstream slot is freed as soon as the upstream answers, so recording
verdicts (a group commit) never idles the upstream. An event that waited for a slot so long that
its forward could outlast its lease is given back untried rather than sent: another worker may
hold it by then. Each try on the wire is kept with the event, written by the same statement that
marks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Mapping

from gateway.errors import Rejection, StoreError
from gateway.events.attempts import Tries
from gateway.events.base import Backoff, EventRecord, EventStore
from gateway.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.outcomes import EventStatus
from gateway.providers.spec import ProviderSpec
from gateway.redact import redact_event
from gateway.settings.model import QueueSettings
from gateway.tracing import new_traceparent

log = logging.getLogger("gateway.delivery")


class Delivery:
    def __init__(
        self,
        events: EventStore,
        forwarder: Forwarder,
        settings: QueueSettings,
        providers: Mapping[str, ProviderSpec],
        metrics: Metrics,
    ) -> None:
        self.events = events
        self.forwarder = forwarder
        self.settings = settings
        self.providers = providers
        self.metrics = metrics
        self.backoff = Backoff(settings.backoff_base, settings.backoff_max)
        self._wake = asyncio.Event()
        self._held = 0  # events held: reserved by requests being committed, claimed, delivering, marking
        self._wire = asyncio.Semaphore(settings.concurrency)  # requests to the upstream in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: dict[int, EventRecord] = {}  # the events being delivered by this process
        self._loop_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # once: get_running_loop() is a syscall on 3.11
        self._stopping = False

    def notify(self) -> None:
        self._wake.set()

    def reserve(self) -> bool:
        """Hold an event about to be committed, if this process holds fewer than ``hold``. The
        event is then stored already leased (``delivering``) and handed to :meth:`dispatch` after
        the commit: the common case costs no claim query. Otherwise it is stored ``queued``."""
        if self._stopping or self._held >= self.settings.hold:
            return False
        self._held += 1
        return True

    def unreserve(self) -> None:
        self._held -= 1

    def dispatch(self, record: EventRecord) -> None:
        """Deliver a committed, leased event on the slot :meth:`reserve` took, unless the claim
        loop got it first (its lease ran out while the commit was slow): one delivery is enough."""
        if record.id in self._inflight:
            self.unreserve()
            return
        self._spawn(record)

    def _spawn(self, record: EventRecord) -> None:
        self._inflight[record.id] = record
        loop = self._loop or asyncio.get_running_loop()
        # The lease began before now (at the commit or the claim); a forward started after
        # `start_by` could still be running when it ends.
        up = self.forwarder.settings
        start_by = loop.time() + max(0.0, self.settings.lease - (up.connect_timeout + up.timeout) * (up.retries + 1))
        task = loop.create_task(self._deliver(record, start_by))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, record.id))

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_task = self._loop.create_task(self._run(), name="delivery")

    async def stop(self, grace: float) -> None:
        """Stop claiming; give in-flight deliveries ``grace`` seconds in all (unfinished ones are
        re-claimed after their lease, by this process on restart or by another replica)."""
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + grace
        if self._loop_task is not None:
            await asyncio.wait([self._loop_task], timeout=grace)
            self._loop_task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in self._tasks:
                task.cancel()

    async def _run(self) -> None:
        while not self._stopping:
            free = self.settings.hold - self._held
            if free <= 0:
                await asyncio.sleep(0.01)
                continue
            # Cleared before looking, so a notify() that lands while we look is not lost.
            self._wake.clear()
            want = min(free, self.settings.batch)
            self._held += want  # taken while we look: requests cannot take them too
            batch = await self._claim(want)
            self._held -= want - self._start(batch)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def _claim(self, want: int) -> list[EventRecord]:
        try:
            return await self.events.claim_due(want, self.settings.lease)
        except StoreError:
            self.metrics.child(self.metrics.store_errors, "events", "retry").inc()
        except Exception:  # the loop must outlive any one failure, or delivery stops silently
            log.exception("claiming due events failed")
        return []

    def _start(self, batch: list[EventRecord]) -> int:
        """Deliver the claimed events, already counted as held; returns how many it kept."""
        started = 0
        for record in batch:
            # A lease that ran out while this process still delivers the event (a slow
            # upstream, a long batch): it is ours already; delivering it twice helps no one.
            # The claim counted a new attempt, so the verdict must carry that number, or the
            # fence would drop it and the event would be delivered again after this lease.
            if mine := self._inflight.get(record.id):
                mine.attempts = record.attempts
            else:
                started += 1
                self._spawn(record)
        return started

    def _done(self, task: asyncio.Task[None], record_id: int) -> None:
        self._tasks.discard(task)
        self._inflight.pop(record_id, None)
        self._held -= 1

    async def _deliver(self, record: EventRecord, start_by: float) -> None:
        spec = self.providers.get(record.provider)
        tries = Tries(record.attempts)
        try:
            if not await self._send(record, start_by, tries):
                await self._give_back(record)
                return
        except Rejection as rej:
            await self._failed(record, rej, tries)
            return
        except Exception as exc:  # a bug, not an answer: retry later rather than leave it leased
            log.exception("delivery failed", extra={"provider": record.provider, "event_id": record.event_id})
            await self._failed(record, Rejection("internal_error", f"delivery failed: {type(exc).__name__}"), tries)
            return
        redacted = redact_event(record.event, spec.redact) if spec and spec.redact else None
        await self._mark_delivered(record, redacted, tries)
        self.metrics.child(self.metrics.queue_deliveries, record.provider, EventStatus.DELIVERED).inc()

    async def _send(self, record: EventRecord, start_by: float, tries: Tries) -> bool:
        """Forward on one of the ``concurrency`` upstream slots. False, and nothing sent, when
        the wait for a slot took the event past ``start_by``."""
        waited = self._wire.locked()
        async with self._wire:
            if waited and (self._loop or asyncio.get_running_loop()).time() > start_by:
                return False
            await self.forwarder.send(record.provider, record.event, new_traceparent(), tries)
        return True

    async def _give_back(self, record: EventRecord) -> None:
        """Queue an event again untried (its attempt not counted), for whichever worker is free."""
        try:
            await self.events.release(record.id, record.attempts, received_at=record.received_at)
        except StoreError:  # it stays leased to this process: taken over when the lease ends
            self.metrics.child(self.metrics.store_errors, "events", "release").inc()
            return
        self.metrics.child(self.metrics.queue_deliveries, record.provider, "released").inc()

    async def _mark_delivered(self, record: EventRecord, redacted: bytes | None, tries: Tries) -> None:
        pauses = iter((0.5, 1.0, 2.0))  # a short store hiccup must not cost a second delivery
        unrecorded = tries.items  # a failed statement wrote nothing; a fenced-off one wrote the tries
        while True:
            attempt = record.attempts
            try:
                await self.events.mark_delivered(
                    record.id, redacted, attempt=attempt, tries=unrecorded, received_at=record.received_at
                )
            except StoreError:
                self.metrics.child(self.metrics.store_errors, "events", "mark_delivered").inc()
                pause = next(pauses, None)
                if pause is None or self._stopping:
                    # Delivered but not marked: delivered again once its claim is taken over.
                    # The upstream sees the same CloudEvent id twice: it must be idempotent on `id`.
                    return
                await asyncio.sleep(pause)
                continue
            unrecorded = []
            if record.attempts == attempt:
                return
            # Re-claimed by this process while being marked: that mark was fenced off; again.

    async def _failed(self, record: EventRecord, rej: Rejection, tries: Tries) -> None:
        error = f"{rej.code}: {rej.message}"
        try:
            if record.attempts >= self.settings.max_attempts:
                await self.events.mark_dead(
                    record.id, error, attempt=record.attempts, tries=tries.items, received_at=record.received_at
                )
                self.metrics.child(self.metrics.queue_deliveries, record.provider, EventStatus.DEAD).inc()
                where = {"provider": record.provider, "event_id": record.event_id, "error": error}
                log.warning("dead letter", extra=where)
                return
            retry_after = _retry_after(rej.headers.get("Retry-After") if rej.headers else None)
            delay = self.backoff.delay(record.attempts, retry_after)
            await self.events.mark_retry(
                record.id, delay, error, attempt=record.attempts, tries=tries.items, received_at=record.received_at
            )
            self.metrics.child(self.metrics.queue_deliveries, record.provider, "retry").inc()
        except StoreError:
            self.metrics.child(self.metrics.store_errors, "events", "mark_failed").inc()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
