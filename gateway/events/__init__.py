"""The event store, chosen by URL scheme: ``memory://`` (bounded, this process) or ``postgresql://``."""

from __future__ import annotations

from gateway.events.base import EventFilter, EventRecord, EventStore
from gateway.settings.model import EventsSettings
from gateway.stats import StatsLedger


def event_store_from_settings(settings: EventsSettings, ledger: StatsLedger) -> EventStore:
    if settings.url.startswith(("postgresql://", "postgres://")):
        from gateway.events.postgres import PostgresEventStore

        return PostgresEventStore(
            settings.url, migrate=settings.migrate_on_start, pool_size=settings.pool_size, timeout=settings.timeout
        )
    from gateway.events.memory import MemoryEventStore

    return MemoryEventStore(settings.url, settings.max_memory_events, ledger, settings.max_memory_bytes)


__all__ = ["EventFilter", "EventRecord", "EventStore", "event_store_from_settings"]
