"""The event store, chosen by URL scheme: ``memory://`` (bounded, this process) or ``postgresql://``.

Each backend module registers its schemes in ``EVENT_STORES`` (as ``gateway.stores`` does);
``asyncpg`` is imported only when a PostgreSQL store connects.
"""

from __future__ import annotations

from gateway.events import memory, postgres
from gateway.events.base import EVENT_STORES, EventFilter, EventRecord, EventStore, EventStoreOptions
from gateway.stats import StatsLedger

__all__ = [
    "EVENT_STORES",
    "EventFilter",
    "EventRecord",
    "EventStore",
    "EventStoreOptions",
    "event_store_from_url",
    "memory",
    "postgres",
]


def event_store_from_url(
    url: str, options: EventStoreOptions | None = None, ledger: StatsLedger | None = None
) -> EventStore:
    """The event store for ``url``; ``ledger`` keeps the rejection counts of a store that has no table."""
    return EVENT_STORES.backend(url).open(url, options or EventStoreOptions(), ledger)
