"""The gateway's settings as frozen dataclasses: built once by ``load_config`` and never mutated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from gateway.providers.spec import Network, ProviderSpec, RateLimit
from gateway.secrets import Secret, mask_url


def _masked_repr(obj: Any, **shown: Any) -> str:
    """The dataclass repr, with the values in ``shown`` standing in for the real ones.

    SECURITY: store and upstream URLs carry passwords, upstream headers carry tokens; a repr is
    what ends up in a traceback or a debug log.
    """
    parts = (f"{f.name}={shown.get(f.name, getattr(obj, f.name))!r}" for f in fields(obj) if f.repr)
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Queue mode: background delivery from the PostgreSQL outbox."""

    concurrency: int = 16  # deliveries in flight per process
    batch: int = 64  # events claimed per query
    max_attempts: int = 12  # then the event is dead (a dead letter)
    backoff_base: float = 1.0  # seconds; doubles per attempt, with jitter
    backoff_max: float = 3600.0
    poll_interval: float = 0.5  # seconds between looks when idle (new events wake workers at once)
    lease: float = 60.0  # a claim held by a live but stuck worker returns to the queue after this


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """The event store: audit log, outbox and dead letters."""

    url: str = "memory://"
    max_memory_events: int = 10_000
    migrate_on_start: bool = True
    retention_days: float = 30.0
    pool_size: int = 10
    timeout: float = 5.0

    def __repr__(self) -> str:
        return _masked_repr(self, url=mask_url(self.url))


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """Where normalized events go and how patiently."""

    url: str
    mode: str = "sync"  # sync | queue
    connect_timeout: float = 2.0
    timeout: float = 10.0
    retries: int = 1  # extra attempts after a connection error (never after a response)
    headers: Mapping[str, str] | None = None
    queue: QueueSettings = QueueSettings()

    def __repr__(self) -> str:
        headers = {name: "***" for name in self.headers} if self.headers else self.headers
        return _masked_repr(self, url=mask_url(self.url), headers=headers)


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """Event-id dedup: a short lease while forwarding, a long memory once forwarded."""

    lease: float = 60.0  # an in-flight claim expires after this, so a crash never blocks an id
    inflight_wait: float = 2.0  # how long a copy waits for the first to finish before 409
    max_entries: int = 1_000_000  # memory backend bound


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Where dedup and rate-limit state lives, and what happens when that store fails."""

    url: str = "memory://"
    key_prefix: str = "whgw:"
    timeout: float = 0.5
    dedup_on_error: str = "closed"  # closed: 503 so the provider retries; open: forward unchecked
    rate_limit_on_error: str = "open"  # open: let traffic through; closed: 503

    def __repr__(self) -> str:
        return _masked_repr(self, url=mask_url(self.url))


@dataclass(frozen=True, slots=True)
class TracingSettings:
    enabled: bool = False
    exporter: str = "console"  # console | otlp
    endpoint: str = ""
    service_name: str = "webhook-gateway"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``load_config`` read and checked. ``file`` names where it came from."""

    file: str
    host: str
    port: int
    public_url: str
    upstream: UpstreamSettings
    providers: Mapping[str, ProviderSpec]
    trusted_proxies: tuple[Network, ...] = ()
    body_timeout: float = 10.0
    per_source_limit: RateLimit | None = None
    dedup: DedupSettings = DedupSettings()
    state: StateSettings = StateSettings()
    events: EventsSettings = EventsSettings()
    api_keys: tuple[Secret, ...] = ()
    log_level: str = "info"
    tracing: TracingSettings = TracingSettings()
    drain_delay: float = 0.0
    shutdown_timeout: float = 25.0

    def webhook_url(self, provider: str) -> str:
        return f"{self.public_url.rstrip('/')}/payments/api/webhooks/{provider}/"
