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
verdicts (a group commit) never idles the upstream. Claims take only what the upstream slots will
soon serve (twice ``concurrency`` waiting or on the wire), so a backlog is shared among replicas.
A forward is bounded by ``upstream.timeout``: one that could no longer end within its event's lease
(the event waited for a slot, or its commit was slow) is not made, and the event is given back
untried; so is one still waiting when the process stops, and one claimed before the process
lost its lease-holder session (another worker may have taken it over meanwhile: the give-back is
fenced off then). Each try on the wire is kept with the event, written by the same statement that
marks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

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
_T = TypeVar("_T")


@dataclass(slots=True)
class _Held:
    """An event this process delivers, when its lease ends (the loop's clock), and the event
    store's ``claims_epoch`` it was claimed in (a re-claim by this process moves both)."""

    record: EventRecord
    lease_end: float
    epoch: int


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
        self._inflight: dict[int, _Held] = {}  # the events being delivered by this process, by id
        self._pending = 0  # of them, those waiting for an upstream slot or on the wire
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

    def dispatch(self, record: EventRecord, epoch: int) -> None:
        """Deliver a committed, leased event on the slot :meth:`reserve` took, unless the claim
        loop got it first (its lease ran out while the commit was slow): one delivery is enough.
        ``epoch``: the event store's ``claims_epoch`` read before the insert that leased it."""
        if record.id in self._inflight:
            self.unreserve()
            return
        loop = self._loop or asyncio.get_running_loop()
        # Leased since before the commit, by this process's wall clock (``record_from``).
        left = (record.locked_until - datetime.now(UTC)).total_seconds() if record.locked_until else 0.0
        if left <= 0:  # the commit outlasted the lease: any worker may have claimed it since
            self.unreserve()
            self.notify()  # claimed like any due event, by whoever is first: delivered once
            return
        self._spawn(record, loop.time() + left, epoch)

    def _spawn(self, record: EventRecord, lease_end: float, epoch: int) -> None:
        held = self._inflight[record.id] = _Held(record, lease_end, epoch)
        self._pending += 1
        task = (self._loop or asyncio.get_running_loop()).create_task(self._deliver(held))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, held))

    def _forget(self, held: _Held) -> None:
        """This process no longer delivers the event (a later claim of its id is a new delivery)."""
        if self._inflight.get(held.record.id) is held:
            del self._inflight[held.record.id]

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
            await asyncio.wait([self._loop_task], timeout=1.0)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in self._tasks:
                task.cancel()
        if self._tasks:  # settled (their counts too) before the event store closes under them
            await asyncio.wait(self._tasks, timeout=1.0)

    async def _run(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        while not self._stopping:
            # No more than the upstream slots will soon serve: a backlog stays claimable by the
            # other replicas, and a claimed event does not wait out its lease for a slot.
            free = min(self.settings.hold - self._held, 2 * self.settings.concurrency - self._pending)
            if free <= 0:
                await self._check_claims()  # a lost holder session is noticed while busy too
                await asyncio.sleep(0.01)
                continue
            # Cleared before looking, so a notify() that lands while we look is not lost.
            self._wake.clear()
            want = min(free, self.settings.batch)
            self._held += want  # taken while we look: requests cannot take them too
            lease_end = loop.time() + self.settings.lease  # the server starts the lease after this
            epoch = self.events.claims_epoch  # before: a session lost during the claim moves it
            batch: list[EventRecord] = []
            try:
                batch = await self._claim(want)
            finally:  # also when stop() cancels the claim: what it took is rescued with the session
                self._held -= want - self._start(batch, lease_end, epoch)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)

    async def _check_claims(self) -> None:
        await self._looked_up(self.events.check_claims(), None, "checking this process's claims")

    async def _claim(self, want: int) -> list[EventRecord]:
        return await self._looked_up(self.events.claim_due(want, self.settings.lease), [], "claiming due events")

    async def _looked_up(self, call: Awaitable[_T], otherwise: _T, what: str) -> _T:
        """The claim loop's store calls: a store error is counted, a bug logged, and ``otherwise``
        returned, so the loop outlives any one failure (else delivery would stop silently)."""
        try:
            return await call
        except StoreError:
            self.metrics.child(self.metrics.store_errors, "events", "retry").inc()
        except Exception:
            log.exception(f"{what} failed")
        return otherwise

    def _start(self, batch: list[EventRecord], lease_end: float, epoch: int) -> int:
        """Deliver the claimed events, already counted as held; returns how many it kept."""
        started = 0
        for record in batch:
            # A lease that ran out while this process still delivers the event (a slow
            # upstream, a long batch): it is ours already; delivering it twice helps no one.
            # The claim counted a new attempt, so the verdict must carry that number, or the
            # fence would drop it and the event would be delivered again after this lease.
            if mine := self._inflight.get(record.id):
                mine.record.attempts = record.attempts
                mine.lease_end, mine.epoch = lease_end, epoch
            else:
                started += 1
                self._spawn(record, lease_end, epoch)
        return started

    def _done(self, task: asyncio.Task[None], held: _Held) -> None:
        self._tasks.discard(task)
        self._forget(held)
        self._held -= 1

    async def _deliver(self, held: _Held) -> None:
        record = held.record
        try:
            tries, rejection = await self._on_wire(held)
        finally:
            self._pending -= 1
        if tries is None:
            await self._give_back(held)
            return
        if rejection is not None:
            # Nothing is on the wire any more: should the lease run out while the verdict is
            # written (a forward that took its whole timeout), a re-claim is a new delivery, not
            # one absorbed by this finished one (its verdict is then fenced off).
            self._forget(held)
            await self._failed(record, rejection, tries)
            return
        spec = self.providers.get(record.provider)
        redacted = redact_event(record.event, spec.redact) if spec and spec.redact else None
        await self._mark_delivered(record, redacted, tries)
        self.metrics.child(self.metrics.queue_deliveries, record.provider, EventStatus.DELIVERED).inc()

    async def _on_wire(self, held: _Held) -> tuple[Tries | None, Rejection | None]:
        """Forward the held event on one of the ``concurrency`` upstream slots: its tries, and the
        refusal if the upstream did not take it. No tries (nothing sent) when the process is
        stopping, when the forward could outlast the lease (if the lease is longer than
        ``upstream.timeout`` at all: a shorter one is the operator's backstop, see the lease test),
        or when the claim may have passed to another worker since (``claims_epoch`` moved)."""
        record = held.record
        async with self._wire:
            timeout = self.forwarder.settings.timeout
            start_by = held.lease_end - timeout if self.settings.lease > timeout else math.inf
            late = (self._loop or asyncio.get_running_loop()).time() > start_by
            if self._stopping or late or held.epoch != self.events.claims_epoch:
                return None, None
            tries = Tries(record.attempts)  # after the wait: a re-claim meanwhile counted a new attempt
            try:
                await self.forwarder.send(record.provider, record.event, new_traceparent(), tries)
            except Rejection as rej:
                return tries, rej
            except Exception as exc:  # a bug, not an answer: retry later rather than leave it leased
                log.exception("delivery failed", extra={"provider": record.provider, "event_id": record.event_id})
                return tries, Rejection("internal_error", f"delivery failed: {type(exc).__name__}")
        return tries, None

    async def _give_back(self, held: _Held) -> None:
        """Queue an event again untried (its attempt not counted), for whichever worker is free."""
        self._forget(held)  # first: a claim of it from now on is a new delivery, here or elsewhere
        record = held.record
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
