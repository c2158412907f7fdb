"""``memory://`` event store: the last ``max_events`` events of this process, for the audit API.

Bounded in count and in bytes (``max_bytes``: bodies, envelopes, headers and delivery attempts),
so a flood of large webhooks cannot grow the process past the bound: the oldest events go first.
Each event keeps its newest ``KEEP_PER_EVENT`` delivery attempts.

Not durable, so the config refuses queue mode on it (a 202 must mean the event is on disk).
"""

from __future__ import annotations

import builtins
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.events.attempts import KEEP_PER_EVENT, Attempt
from gateway.events.base import (
    BACKLOG_STATUSES,
    EVENT_STORES,
    PENDING_STATUSES,
    Backlog,
    EventFilter,
    EventRecord,
    EventStoreOptions,
    Rejected,
    contains,
)
from gateway.outcomes import EventStatus
from gateway.stats import StatsLedger


def _size(r: EventRecord) -> int:
    """What a record holds, roughly: its body and envelope plus its header text (a bound, not a
    measurement of Python's overhead, which is a few hundred bytes per record)."""
    headers = r.headers
    held = len(r.body) + len(r.event) + sum(map(len, headers)) + sum(map(len, headers.values())) + 512
    return held + sum(a.size() for a in r.delivery_attempts)


def matches(r: EventRecord, f: EventFilter) -> bool:
    return (
        (f.provider is None or r.provider == f.provider)
        and (f.status is None or r.status == f.status)
        and (f.event_id is None or r.event_id == f.event_id)
        and (f.event_type is None or r.event_type == f.event_type)
        and (f.since is None or r.received_at >= f.since)
        and (f.until is None or r.received_at < f.until)
        and (f.before_id is None or r.id < f.before_id)
        and (f.contains is None or contains(_payload(r), f.contains))
    )


def _payload(r: EventRecord) -> Any:
    try:
        return json.loads(r.event).get("data", {}).get("payload")
    except (ValueError, AttributeError):
        return None


@EVENT_STORES.register("memory")
class MemoryEventStore:
    durable = False
    claims_epoch = 0  # one process: nobody else takes its claims over

    def __init__(
        self,
        url: str = "memory://",
        max_events: int = 10_000,
        ledger: StatsLedger | None = None,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.bytes = 0  # the stored size of the events kept (see ``_size``)
        self._events: OrderedDict[int, EventRecord] = OrderedDict()
        self._keys: dict[tuple[str, str], int] = {}
        self._rejections: dict[tuple[datetime, str, str, str], Rejected] = {}
        self._next_id = 1
        self.ledger = ledger
        self.on_audit_lost: Callable[[int, str], None] = lambda count, reason: None  # never: all in memory

    @classmethod
    def open(cls, url: str, options: EventStoreOptions, ledger: StatsLedger | None) -> MemoryEventStore:
        return cls(url, options.max_events, ledger, options.max_bytes)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def insert(self, record: EventRecord) -> bool:
        return self._insert(record)

    def _insert(self, record: EventRecord) -> bool:
        key = (record.provider, record.event_id)
        if key in self._keys:
            return False
        record.id = self._next_id
        self._next_id += 1
        self._events[record.id] = record
        self._keys[key] = record.id
        del record.delivery_attempts[:-KEEP_PER_EVENT]
        self.bytes += _size(record)
        self._shrink()
        return True

    def _shrink(self) -> None:
        while len(self._events) > self.max_events or (self.bytes > self.max_bytes and len(self._events) > 1):
            _, old = self._events.popitem(last=False)
            self._forget(old)

    def _add_tries(self, record_id: int, tries: Sequence[Attempt]) -> None:
        """Keep the delivery's tries with the event (the newest ``KEEP_PER_EVENT``), in the bound."""
        r = self._events.get(record_id)
        if r is None or not tries:
            return
        before = _size(r)
        r.delivery_attempts = [*r.delivery_attempts, *tries][-KEEP_PER_EVENT:]
        self.bytes += _size(r) - before
        self._shrink()

    def _forget(self, record: EventRecord) -> None:
        self._keys.pop((record.provider, record.event_id), None)
        self.bytes -= _size(record)

    def submit(self, record: EventRecord) -> None:
        """Audit copy of a delivered event (sync mode)."""
        self._insert(record)

    def record_rejection(self, provider: str, source: str, code: str) -> None:
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        key = (minute, provider, source, code)
        if key in self._rejections:
            self._rejections[key].count += 1
        elif len(self._rejections) < self.max_events:
            self._rejections[key] = Rejected(minute, provider, source, code)

    async def check_claims(self) -> None:
        """One process holds them all: nothing to check."""

    async def claim_due(self, limit: int, lease: float) -> builtins.list[EventRecord]:
        now = datetime.now(UTC)
        out = []
        for r in self._events.values():
            if r.status == EventStatus.QUEUED:
                due = r.next_attempt_at is None or r.next_attempt_at <= now
            else:
                due = r.status == EventStatus.DELIVERING and (r.locked_until is None or r.locked_until <= now)
            if due:
                r.status = EventStatus.DELIVERING
                r.attempts += 1
                r.locked_until = now + timedelta(seconds=lease)
                out.append(r)
                if len(out) >= limit:
                    break
        return out

    def _fenced(self, record_id: int, attempt: int | None) -> EventRecord | None:
        r = self._events.get(record_id)
        if r is None or (attempt is not None and (r.status != EventStatus.DELIVERING or r.attempts != attempt)):
            return None
        return r

    async def mark_delivered(
        self,
        record_id: int,
        event: bytes | None = None,
        attempt: int | None = None,
        tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None:
        if r := self._fenced(record_id, attempt):
            self.bytes += len(event or r.event) - len(r.event)
            r.event = event or r.event
            r.status, r.delivered_at, r.next_attempt_at, r.last_error = (
                EventStatus.DELIVERED,
                datetime.now(UTC),
                None,
                None,
            )
        self._add_tries(record_id, tries)

    async def mark_retry(
        self,
        record_id: int,
        delay: float,
        error: str,
        attempt: int | None = None,
        tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None:
        if r := self._fenced(record_id, attempt):
            r.status, r.last_error = EventStatus.QUEUED, error
            r.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
        self._add_tries(record_id, tries)

    async def release(self, record_id: int, attempt: int, received_at: datetime | None = None) -> None:
        if r := self._fenced(record_id, attempt):
            r.status, r.attempts, r.locked_until = EventStatus.QUEUED, r.attempts - 1, None
            r.next_attempt_at = datetime.now(UTC)

    async def mark_dead(
        self,
        record_id: int,
        error: str,
        attempt: int | None = None,
        tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None:
        if r := self._fenced(record_id, attempt):
            r.status, r.last_error, r.next_attempt_at = EventStatus.DEAD, error, None
        self._add_tries(record_id, tries)

    async def add_attempts(self, record_id: int, tries: Sequence[Attempt]) -> None:
        self._add_tries(record_id, tries)

    async def list(self, flt: EventFilter) -> builtins.list[EventRecord]:
        out = [r for r in reversed(self._events.values()) if matches(r, flt)]
        return out[: flt.limit]

    async def get(self, record_id: int) -> EventRecord | None:
        return self._events.get(record_id)

    async def requeue(self, flt: EventFilter, ids: builtins.list[int] | None = None) -> int:
        n = 0
        for r in self._events.values():
            if (ids is None or r.id in ids) and matches(r, flt) and r.status != EventStatus.DELIVERING:
                r.status, r.next_attempt_at, r.attempts = EventStatus.QUEUED, datetime.now(UTC), 0
                n += 1
        return n

    async def purge(self, flt: EventFilter) -> int:
        doomed = [r for r in self._events.values() if matches(r, flt)]
        for r in doomed:
            del self._events[r.id]
            self._forget(r)
        return len(doomed)

    async def stats(self, days: int) -> dict[str, Any]:
        ledger = self.ledger or StatsLedger()
        return ledger.summary(days)

    async def count(self, flt: EventFilter) -> int:
        flt = EventFilter(**{**_fields(flt), "before_id": None})
        return sum(1 for r in self._events.values() if matches(r, flt))

    async def rejections(self, flt: EventFilter) -> builtins.list[Rejected]:
        rows = [
            v for (minute, provider, _, code), v in self._rejections.items()
            if (flt.provider is None or provider == flt.provider) and (flt.status is None or code == flt.status)
            and (flt.since is None or minute >= flt.since) and (flt.until is None or minute < flt.until)
        ]  # fmt: skip
        return sorted(rows, key=lambda v: v.minute, reverse=True)[: flt.limit]

    async def backlog(self) -> Backlog:
        counts = dict.fromkeys(BACKLOG_STATUSES, 0)
        pending = [r.received_at for r in self._events.values() if r.status in PENDING_STATUSES]
        for r in self._events.values():
            if r.status in counts:
                counts[r.status] += 1
        return Backlog(counts, min(pending, default=None))

    async def expire(self, days: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        flt = EventFilter(until=cutoff)
        doomed = [
            r.id
            for r in self._events.values()
            if matches(r, flt) and r.status in (EventStatus.DELIVERED, EventStatus.DEAD)
        ]
        for i in doomed:
            self._forget(self._events.pop(i))
        self._rejections = {k: v for k, v in self._rejections.items() if k[0] >= cutoff}
        for r in self._events.values():  # as PostgreSQL does: attempts go by their own time
            if r.delivery_attempts and r.delivery_attempts[0].at < cutoff:
                before = _size(r)
                r.delivery_attempts = [a for a in r.delivery_attempts if a.at >= cutoff]
                self.bytes += _size(r) - before
        return len(doomed)


def _fields(flt: EventFilter) -> dict[str, Any]:
    return {name: getattr(flt, name) for name in EventFilter.__slots__}
