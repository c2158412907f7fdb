"""The event store: audit log, outbox and dead-letter queue in one table of events.

Status of an event (``outcomes.EventStatus``): ``queued`` (waiting for delivery, queue mode),
``delivering`` (a worker holds it until ``locked_until``), ``delivered``, ``dead`` (gave up after
``max_attempts``). Rejected
requests are not events: they are folded into per-minute counts by provider, source and code.
"""

from __future__ import annotations

import builtins
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.errors import Rejection
from gateway.events.attempts import Attempt
from gateway.outcomes import EventStatus
from gateway.stats import StatsLedger
from gateway.stores.registry import Backends

#: How deep a containment filter may nest: deeper ones are refused before any store sees them
#: (the memory store's ``contains`` recurses once per level, and no real search needs more).
MAX_CONTAINS_DEPTH = 32

# Plain strings (``.value``), as ``outcomes.STATUSES``: they become dict keys that orjson writes.
#: The outbox: what has not been delivered (``EventStore.backlog`` counts these).
BACKLOG_STATUSES = tuple(s.value for s in (EventStatus.QUEUED, EventStatus.DELIVERING, EventStatus.DEAD))
#: Not yet delivered nor given up: what the oldest-pending age is measured over.
PENDING_STATUSES = (EventStatus.QUEUED.value, EventStatus.DELIVERING.value)


@dataclass(slots=True)
class EventRecord:
    """One accepted webhook as stored. ``event`` is the CloudEvents envelope to deliver."""

    provider: str
    event_id: str
    event_type: str
    received_at: datetime
    status: str
    headers: dict[str, str]
    body: bytes
    event: bytes
    client_ip: str = ""
    attempts: int = 0
    next_attempt_at: datetime | None = None
    locked_until: datetime | None = None  # while delivering: the lease
    last_error: str | None = None
    delivered_at: datetime | None = None
    id: int = 0
    secret_index: int | None = None  # which configured key verified it (for rotation checks)
    #: Each try on the wire, oldest first: filled by ``get`` (not by ``list``), and given to
    #: ``submit``/``insert`` for attempts made before the event was stored (sync mode).
    delivery_attempts: builtins.list[Attempt] = field(default_factory=builtins.list)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "event_id": self.event_id,
            "event_type": self.event_type or None,
            "received_at": _iso(self.received_at),
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "delivered_at": _iso(self.delivered_at),
            "last_error": self.last_error,
            "client_ip": self.client_ip or None,
        }


@dataclass(frozen=True, slots=True)
class EventFilter:
    provider: str | None = None
    status: str | None = None
    event_id: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    before_id: int | None = None  # keyset pagination: events with a smaller id
    contains: Any = None  # a JSON value the payload must contain (PostgreSQL ``@>`` semantics)

    def __post_init__(self) -> None:
        if self.contains is not None and json_depth(self.contains) > MAX_CONTAINS_DEPTH:
            raise ValueError(f"contains nests deeper than {MAX_CONTAINS_DEPTH} levels")


@dataclass(slots=True)
class Rejected:
    """A folded count of rejections: one row per minute, provider, source and code."""

    minute: datetime
    provider: str
    source: str
    code: str
    count: int = 1


def in_utc(when: datetime, name: str) -> datetime:
    """A filter's time in UTC, as the store compares it: 0001-01-01T00:00+01:00 is before year 1,
    a 400 (``name`` is out of range) rather than a store error later (a 503: the store is down)."""
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise Rejection("invalid_parameter", f"{name} is out of range") from None


class EventStore(Protocol):
    """What the pipeline, the delivery workers and the management API need from storage."""

    url: str
    durable: bool
    #: Called with (count, reason) when audit copies given to ``submit`` cannot be written.
    on_audit_lost: Callable[[int, str], None]
    @property
    def claims_epoch(self) -> int:
        """Changes when this process's claims may have passed to another worker (PostgreSQL: its
        lease-holder session was lost); delivery gives back what it claimed before and has not sent."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    async def insert(self, record: EventRecord) -> bool:
        """Store ``record`` durably (batched with concurrent callers); False if its id exists."""

    def submit(self, record: EventRecord) -> None:
        """Store an audit copy of an event already delivered (sync mode), without waiting."""

    def record_rejection(self, provider: str, source: str, code: str) -> None:
        """Count a rejection or duplicate (never blocks; flushed in the background)."""

    async def claim_due(self, limit: int, lease: float) -> builtins.list[EventRecord]:
        """Queued events due now (and expired leases), marked delivering until now + lease."""

    async def check_claims(self) -> None:
        """At most once a second (``claim_due`` does it too): make sure this process still holds
        its claims, moving ``claims_epoch`` if it lost them, and free those of processes gone."""

    # ``attempt`` (from delivery) fences: nothing changes unless that attempt still holds the lease.
    # ``tries`` are the delivery's tries on the wire, stored in the same write (fenced or not:
    # they happened).
    # ``received_at`` (the record's, when known) lets a partitioned store find the row by its
    # whole key instead of probing every partition.
    async def mark_delivered(
        self,
        record_id: int,
        event: bytes | None = None,
        attempt: int | None = None,
        tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None: ...
    async def mark_retry(
        self,
        record_id: int,
        delay: float,
        error: str,
        attempt: int | None = None,
        tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None: ...
    async def mark_dead(
        self,
        record_id: int,
        error: str,
        attempt: int | None = None,
        tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None: ...

    async def release(self, record_id: int, attempt: int, received_at: datetime | None = None) -> None:
        """Give a leased event back untried: queued, due now, that attempt not counted (fenced)."""

    async def add_attempts(self, record_id: int, tries: Sequence[Attempt]) -> None:
        """Record tries that changed nothing else (a sync-mode replay), in one statement."""

    async def list(self, flt: EventFilter) -> builtins.list[EventRecord]: ...
    async def get(self, record_id: int) -> EventRecord | None:
        """One event with its ``delivery_attempts`` (the newest ``KEEP_PER_EVENT``, oldest first)."""

    async def requeue(self, flt: EventFilter, ids: builtins.list[int] | None = None) -> int:
        """Set matching events back to queued, due now; returns how many."""

    async def purge(self, flt: EventFilter) -> int:
        """Delete matching events and their delivery attempts; returns how many."""

    async def stats(self, days: int) -> dict[str, Any]: ...
    async def count(self, flt: EventFilter) -> int:
        """How many events match (``limit`` and ``before_id`` ignored): for bulk-action previews."""

    async def rejections(self, flt: EventFilter) -> builtins.list[Rejected]:
        """Folded rejection counts, newest minute first; ``status`` filters by code."""

    async def backlog(self) -> Backlog:
        """The outbox now: events by status (queued, delivering, dead) and the oldest pending one."""

    async def expire(self, days: float) -> int:
        """Retention: delete delivered and dead events, rejection counts and delivery attempts
        older than ``days``."""


@dataclass(frozen=True, slots=True)
class Backlog:
    """What ``EventStore.backlog`` reads: counts by status, and when the oldest pending arrived."""

    counts: dict[str, int]
    oldest_pending: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventStoreOptions:
    """What an event store may be opened with besides its URL; each backend reads what applies."""

    max_events: int = 10_000  # memory: events kept, the oldest dropped first
    migrate: bool = True  # PostgreSQL: apply pending migrations on start
    pool_size: int = 10  # PostgreSQL: connections
    timeout: float = 5.0  # PostgreSQL: seconds per statement
    max_bytes: int = 64 * 1024 * 1024  # memory: bytes of stored bodies and headers, the oldest dropped first


class EventBackend(Protocol):
    """What ``EVENT_STORES`` holds: an event store class that opens from a URL and options."""

    durable: bool  # survives a restart and is shared by replicas: queue mode needs it

    @classmethod
    def open(cls, url: str, options: EventStoreOptions, ledger: StatsLedger | None) -> EventStore: ...


#: URL scheme -> event store class; each backend module registers its own schemes.
EVENT_STORES: Backends[type[EventBackend]] = Backends("event store")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, capped, times 0.5 to 1.0."""

    base: float = 1.0
    cap: float = 3600.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        delay = ceiling * (0.5 + self.rng.random() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))  # honour the upstream's Retry-After
        return float(delay)


def json_depth(value: Any) -> int:
    """How deep a parsed JSON value nests (a scalar is 0, ``[[1]]`` is 2), without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def contains(doc: Any, needle: Any) -> bool:
    """PostgreSQL's jsonb ``@>`` in Python: objects by subset, arrays by element containment."""
    if isinstance(needle, dict):
        return isinstance(doc, dict) and all(k in doc and contains(doc[k], v) for k, v in needle.items())
    if isinstance(needle, list):
        if not isinstance(doc, list):
            return False
        return all(any(contains(d, n) for d in doc) for n in needle)
    if isinstance(doc, list) and not isinstance(needle, dict | list):
        return needle in doc  # a scalar is contained in an array holding it
    return isinstance(doc, bool) == isinstance(needle, bool) and doc == needle  # JSON true is not 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") if value else None
