"""The gateway's settings, each declared once: a frozen dataclass field with its default and its doc.

This file is the only place a setting of the gateway's file is written down. The generic reader
(``gateway/declare/read.py``) reads and checks it from the field's type and metadata, and
``python -m gateway.settings.schema --write`` generates ``config/gateway.schema.json`` and the
reference table of ``docs/configuration.md`` from it (a test fails when they are stale). To add a
setting, add one field here (``setting(default, doc, ...)``) and run that command; see "Adding a
setting" in docs/configuration.md. A provider entry's keys are declared the same way, in
``gateway/providers/entry.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from gateway import routes
from gateway.addresses import Network
from gateway.declare.fields import section, setting
from gateway.events import EVENT_STORES
from gateway.providers.spec import ProviderSpec, RateLimit
from gateway.secrets import Secret, mask_url
from gateway.settings import values
from gateway.stores import STORES

HTTP_SCHEMES = ("http://", "https://")
EVENT_SCHEMES = EVENT_STORES.schemes  # each backend registers its own schemes
STORE_SCHEMES = STORES.schemes
DURATION_SCHEMA = {"$ref": "#/$defs/duration"}
RATE_SCHEMA = {"$ref": "#/$defs/rateLimitOrOff"}

#: Descriptions of the YAML mappings that group flat fields of ``Settings`` (``listen.host``).
GROUPS = {
    "listen": "Where the gateway listens.",
    "limits": "Request limits.",
    "rate_limits": "GCRA rate limits (429 + Retry-After).",
    "management": "The management API.",
    "logging": "Logs.",
    "shutdown": "Graceful shutdown on SIGTERM.",
    "dashboard.listen": "An own listener for the admin UI, so it need not be exposed with the webhook port.",
    "state.on_error": "What happens when the state store fails (counted in `webhook_gateway_store_errors_total`).",
}


def rate_setting(rate: int, burst: int, doc: str, *, key: str) -> Any:
    """A GCRA rate-limit setting (``{rate, burst}``, or ``false``/``null`` for none), default on."""
    default = RateLimit(rate=float(rate), burst=burst)
    shown = {"rate": rate, "burst": burst}  # as YAML writes it
    return setting(default, doc, key=key, parse=values.rate_limit, schema=RATE_SCHEMA, shown=shown)


def _masked_repr(obj: Any, **shown: Any) -> str:
    """The dataclass repr, with the values in ``shown`` standing in for the real ones.

    SECURITY: store and upstream URLs carry passwords, upstream headers carry tokens; a repr is
    what ends up in a traceback or a debug log.
    """
    parts = (f"{f.name}={shown.get(f.name, getattr(obj, f.name))!r}" for f in fields(obj) if f.repr)
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Queue-mode delivery workers (used when `mode: queue`)."""

    concurrency: int = setting(16, "Queue mode: requests to the upstream in flight per process.")
    hold: int = setting(
        512,
        "Queue mode: events one process holds at once: committed and leased to it, waiting for one of the "
        "`concurrency` upstream slots, on the wire, or delivered and waiting for their verdict to be recorded in "
        "PostgreSQL. A `kill -9` delivers at most this many of them a second time.",
    )
    batch: int = setting(64, "Queue mode: events claimed per query.")
    max_attempts: int = setting(12, "Queue mode: attempts before an event becomes a dead letter.")
    backoff_base: float = setting(
        1.0,
        "Queue mode: seconds before the first retry; doubles per attempt (capped), times a random 0.5 to "
        "1.0. The upstream's `Retry-After` is honoured when longer.",
    )
    backoff_max: float = setting(
        3600.0,
        "Queue mode: the cap of the backoff, seconds (a longer `Retry-After` from the upstream is capped to it too).",
    )
    poll_interval: float = setting(
        0.5, "Queue mode: seconds between looks for due work when idle (a new event wakes the workers at once)."
    )
    lease: float = setting(
        60.0,
        "Queue mode: seconds a claimed event belongs to its worker. A worker whose process dies loses its claims "
        "at once (they belong to its PostgreSQL session, see docs/deployment.md); the lease is the backstop for a "
        "live worker that is stuck, and for a session the server cannot see end.",
    )


#: Header names (shell patterns, any case) masked in stored events besides the credentials that
#: always are (Authorization, Cookie, Proxy-Authorization, X-API-Key, the signature header).
REDACT_HEADERS = ("x-auth-token", "*-token", "*-secret", "*-signature*")


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """The event store: audit log, outbox (queue mode) and dead letters."""

    url: str = setting(
        "memory://",
        "`memory://` (the last `max_memory_events` events of this process; not durable) or "
        "`postgresql://user:password@host:5432/db` (`postgres://` too; durable, shared by replicas).",
        schemes=EVENT_SCHEMES,
        scheme_error="unsupported event store",
        masked=True,
    )
    max_memory_events: int = setting(10_000, "Memory store: events kept, oldest dropped first.")
    max_memory_bytes: int = setting(
        64 * 1024 * 1024,
        "Memory store: bytes of stored bodies, headers and envelopes kept, oldest dropped first.",
        minimum=1024 * 1024,
    )
    redact_headers: tuple[str, ...] = setting(
        REDACT_HEADERS,
        "Header names (shell patterns, any case) masked in stored events besides the credentials that always "
        "are (Authorization, Cookie, Proxy-Authorization, X-API-Key, the provider's signature header). The list "
        "replaces the default; `[]` masks only those credentials.",
        parse=values.header_patterns,
        schema={"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~?-]+$"}},
        shown=list(REDACT_HEADERS),
    )
    migrate_on_start: bool = setting(
        True, "Apply the SQL migrations at start. Turn off when a job runs `webhook-gateway migrate` before a deploy."
    )
    retention_days: float = setting(
        30.0,
        "Delivered and dead events, rejection counts and delivery attempts older than this are deleted (hourly). "
        "Queued events are never deleted. In PostgreSQL the event table is partitioned by day: a day past this age "
        "whose events are all delivered or dead is dropped as a whole partition; the rest is deleted row by row.",
    )
    pool_size: int = setting(10, "PostgreSQL connections per process.")
    timeout: float = setting(5.0, "Seconds per event-store call.")

    def __repr__(self) -> str:
        return _masked_repr(self, url=mask_url(self.url))


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """The internal API that receives the events (docs/events.md)."""

    url: str = setting(
        doc="Where each CloudEvent is POSTed (`http://` or `https://`).",
        schemes=HTTP_SCHEMES,
        masked=True,
    )
    mode: str = setting(
        "sync",
        "`sync`: the provider's request waits for the upstream and gets 200 only after its 2xx (502/503/504 "
        "otherwise, so the provider retries). `queue`: 202 once the event is committed to PostgreSQL; "
        "background workers deliver it with retries and dead letters. `queue` requires "
        "`events.url: postgresql://...`.",
        choices=("sync", "queue"),
    )
    connect_timeout: float = setting(2.0, "Seconds to open a connection to the upstream.")
    timeout: float = setting(
        10.0,
        "Seconds for one whole delivery (then 504 in sync mode, a retry in queue mode). In sync mode keep it "
        "below the providers' own deadlines (Slack 3 s, Shopify 5 s, GitHub 10 s).",
    )
    retries: int = setting(
        1,
        "Extra attempts after a connection-level failure where no answer came back. A request the upstream "
        "answered is never sent twice by this mechanism.",
        minimum=0,
    )
    headers: Mapping[str, str] | None = setting(
        None,
        'Headers added to every delivery (e.g. `Authorization: "Bearer ${UPSTREAM_TOKEN}"`). Values are '
        "strings or integers, without line breaks.",
        parse=values.headers,
        schema={
            "type": "object",
            "additionalProperties": {"anyOf": [{"type": "string", "pattern": "^[^\r\n\0]*$"}, {"type": "integer"}]},
        },
    )
    queue: QueueSettings = section(QueueSettings, "Queue-mode delivery workers (used when `mode: queue`).")

    def __repr__(self) -> str:
        headers = {name: "***" for name in self.headers} if self.headers else self.headers
        return _masked_repr(self, url=mask_url(self.url), headers=headers)


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """Deduplication by event id: a short lease while forwarding, a long memory once forwarded."""

    ttl: float = setting(
        3 * 24 * 3600.0,
        "Seconds (3 days) an accepted event id is remembered; a provider's `dedup_ttl` overrides it. Make it "
        "longer than the provider's retry window.",
        shown=259200,
    )
    lease: float = setting(
        60.0,
        "Seconds an in-flight claim lasts: a replica that dies mid-delivery blocks that event id for at most "
        "this long. Keep it above `upstream.timeout`.",
    )
    inflight_wait: float = setting(
        2.0,
        "Seconds a copy that arrives while the first is still being delivered waits for it; then 409 + "
        "`Retry-After` (never `duplicate` for an event that may still fail). `0` answers 409 at once.",
        zero_ok=True,
    )
    max_entries: int = setting(
        1_000_000,
        "Memory store: the most event ids kept. Past it the oldest go first, even within their "
        "`dedup_ttl`: keep it above the webhooks per second times the longest `dedup_ttl` "
        "(3 days at 4/s is 1,036,800), or use Redis.",
    )


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Where dedup and rate-limit state lives, and what happens when that store fails."""

    url: str = setting(
        "memory://",
        "Dedup and rate-limit state: `memory://` (this process), `redis://` / `rediss://` (one Redis, TLS with "
        "`rediss`), or a Redis Cluster: `redis+cluster://[user:password@]host:port,host:port` / "
        "`rediss+cluster://` (seed nodes, comma-separated; the rest is discovered; database 0 only). Shared by "
        "every replica. URL-encode special characters of the password. See [scaling.md](scaling.md).",
        schemes=STORE_SCHEMES,
        scheme_error="unsupported store",
        masked=True,
    )
    key_prefix: str = setting(
        "whgw:",
        "Prefix of every Redis key (several gateways may share a Redis). With Redis Cluster it may not contain "
        "`{` or `}` (a hash tag there would put every key in one slot).",
        parse=values.raw_text,
        schema={"type": "string"},
    )
    timeout: float = setting(
        0.5,
        "Seconds per store call before it counts as failed. With Redis Cluster the whole call is bounded by it, "
        "redirects and retries after a lost node included.",
    )
    dedup_on_error: str = setting(
        "closed",
        "When the store fails during dedup: `closed` answers 503 `store_unavailable` (the provider retries; no "
        "payment is forwarded twice); `open` forwards without dedup.",
        key="on_error.dedup",
        choices=("open", "closed"),
    )
    rate_limit_on_error: str = setting(
        "open",
        "When the store fails during a rate-limit check: `open` lets the request through (a limiter outage "
        "drops nothing); `closed` answers 503.",
        key="on_error.rate_limit",
        choices=("open", "closed"),
    )

    def __repr__(self) -> str:
        return _masked_repr(self, url=mask_url(self.url))


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry tracing."""

    enabled: bool = setting(
        False,
        "Export OpenTelemetry spans: one server span per webhook, a child per stage; `traceparent` to the "
        "upstream. (Without tracing a `traceparent` is still sent.)",
    )
    exporter: str = setting(
        "console",
        "`console` (stdout) or `otlp` (OTLP over HTTP; needs `pip install 'webhook-gateway[otlp]'`; with "
        "`enabled: true` the config is refused without it).",
        choices=("console", "otlp"),
    )
    endpoint: str = setting(
        "",
        "OTLP endpoint, e.g. `http://otel-collector:4318/v1/traces` (the standard `OTEL_EXPORTER_OTLP_*` "
        "variables apply otherwise).",
        shown_doc="the exporter's default",
    )
    service_name: str = setting("webhook-gateway", "`service.name` of the spans.")


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The staff dashboard at `/payments/admin/` (docs/dashboard.md): off unless enabled."""

    enabled: bool = setting(
        False, "Serve the staff dashboard. Needs `dashboard.keys` or `management.api_keys` to log in with."
    )
    keys: tuple[Secret, ...] = setting(
        (),
        "Staff login keys, same forms as secrets. None: the management API keys log in.",
        parse=values.secret_list,
        schema={"type": "array", "items": {"$ref": "#/$defs/secret"}},
    )
    session_ttl: float = setting(8 * 3600.0, "Seconds a login lasts.")
    refresh: float = setting(30.0, "Seconds between overview refreshes; `0` turns auto-refresh off.", zero_ok=True)
    host: str = setting("127.0.0.1", "Address of the admin UI's own listener (with `listen.port`).", key="listen.host")
    port: int = setting(
        0,
        "Port of the admin UI's own listener; `0`: served on the webhook listener. Must differ from "
        "`listen.port` and `listen.metrics_port`.",
        key="listen.port",
        minimum=0,
        maximum=65535,
    )


@dataclass(frozen=True, slots=True)
class PassthroughSettings:
    """The sidecar as the pod's front door: other requests proxied unchanged to the app."""

    enabled: bool = setting(
        False,
        "Every request outside the gateway's own paths (`/payments/api/webhooks/...`, `/payments/admin/...`, "
        "`/healthz`, `/readyz`, `/metrics`, `/openapi.yaml`) is proxied unchanged to the app: method, path and "
        "query byte for byte, headers (Host too, hop-by-hop ones dropped), body and answer streamed with no "
        "size limit, plus `X-Forwarded-For` (the peer appended), `X-Forwarded-Proto` and `X-Forwarded-Host` "
        "(passed on only from `trusted_proxies`). App unreachable: 503 `upstream_unavailable`; no answer in "
        "time: 504. The webhook route is matched first and pays nothing for it.",
    )
    url: str = setting(
        "",
        "The app's origin, `http(s)://host:port` without a path.",
        parse=values.origin,
        schema={"type": "string", "pattern": "^https?://[^/?#]+/?$"},
        shown_doc="the origin of `upstream.url`",
    )
    timeout: float = setting(60.0, "Seconds without a byte from the app before the answer is given up.")

    def __repr__(self) -> str:
        return _masked_repr(self, url=mask_url(self.url))

    def origin(self, upstream_url: str) -> str:
        """``url``, or the origin of ``upstream_url`` when it is empty."""
        if self.url:
            return self.url
        split = urlsplit(upstream_url)
        return f"{split.scheme}://{split.netloc}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``load_config`` read and checked. ``file`` names where it came from."""

    file: str  # where it was read from (not a key)
    host: str = setting("127.0.0.1", "Address to bind. Use `0.0.0.0` in a container.", key="listen.host")
    port: int = setting(8080, "TCP port, 0 to 65535 (0: any free port).", key="listen.port", minimum=0, maximum=65535)
    metrics_port: int = setting(
        0,
        "Serve `/metrics` on this port only (with `/healthz` and `/readyz`), not on `listen.port`, so the "
        "webhook Service or Ingress never exposes it. 0: `/metrics` on `listen.port`. Must differ from it.",
        key="listen.metrics_port",
        minimum=0,
        maximum=65535,
    )
    public_url: str = setting(
        "",
        "The URL providers reach the gateway at. Webhook URLs (`{public_url}/payments/api/webhooks/{provider}/`) "
        "and the `{url}` placeholder of signed payloads are built from it, so it must be exactly what the "
        "provider calls. `http://` or `https://`; a trailing `/` is dropped.",
        schemes=HTTP_SCHEMES,
        shown_doc="`http://{host}:{port}`",
    )
    upstream: UpstreamSettings = section(doc="The internal API that receives the events (docs/events.md).")
    events: EventsSettings = section(
        EventsSettings, "The event store: audit log, outbox (queue mode) and dead letters."
    )
    providers: Mapping[str, ProviderSpec] = setting(
        doc="Provider name → entry, at least one (see below).", schema={"$ref": "#/$defs/providers"}, by_loader=True
    )
    trusted_proxies: tuple[Network, ...] = setting(
        (),
        "IPs or CIDR networks (IPv4 and IPv6) of the proxies in front of the gateway (ingress, load balancer). "
        "Only when the direct peer is one of these is `X-Forwarded-For` read, and the client is its rightmost "
        "hop that is not a trusted proxy. Needed for `ip_allowlist` and per-source rate limits to see the "
        "provider's address. Never list networks that clients can send from.",
        parse=values.networks,
        schema={"$ref": "#/$defs/networks"},
    )
    url_from_forwarded_headers: bool = setting(
        False, "Gateway-wide default of the provider key of the same name (below)."
    )
    rotation_warn_after: float = setting(
        7 * 24 * 3600.0,
        "Gateway-wide default of the provider key of the same name (below).",
        parse=values.duration,
        schema=DURATION_SCHEMA,
        shown="7d",
    )
    max_body_bytes: int = setting(
        1024 * 1024,
        "Default largest body (1 MiB); a provider's `max_body_bytes` overrides it. Larger bodies get 413, "
        "refused from `Content-Length` before a byte is read when it is declared.",
        key="limits.max_body_bytes",
    )
    body_timeout: float = setting(
        10.0,
        "Seconds to receive the whole body (408 after): slow uploads cannot hold a worker.",
        key="limits.body_timeout",
    )
    header_timeout: float = setting(
        10.0,
        "Seconds from a connection's start (or, kept alive, from the first bytes of its next request) to a "
        "complete request line and headers: 408 `header_timeout` and the connection closes after.",
        key="limits.header_timeout",
    )
    max_connections: int = setting(
        1000,
        "Open client connections per process; one more is answered 503 `too_many_connections` (Retry-After) "
        "and closed before a request is read. `0`: no cap. Keep it below the process's file-descriptor limit.",
        key="limits.max_connections",
        minimum=0,
    )
    per_source_limit: RateLimit | None = rate_setting(
        100,
        200,
        "Per client address (IPv6 per /64), before the signature is checked: a cheap shield against floods of "
        "junk. `false` or `null` disables it.",
        key="rate_limits.per_source",
    )
    per_provider_limit: RateLimit | None = rate_setting(
        1000,
        2000,
        "Default per provider, verified requests only: protects the upstream. A provider's `rate_limit` "
        "overrides it; `false` or `null` disables the default.",
        key="rate_limits.per_provider",
    )
    dedup: DedupSettings = section(DedupSettings, "Deduplication by event id.")
    state: StateSettings = section(StateSettings, "Where dedup and rate-limit state lives.")
    api_keys: tuple[Secret, ...] = setting(
        (),
        "Keys for the management API (`X-API-Key: KEY` or `Authorization: Bearer KEY`), same forms as secrets; "
        "several for rotation. Without keys every management request gets 401: the API is off.",
        key="management.api_keys",
        parse=values.secret_list,
        schema={"type": "array", "items": {"$ref": "#/$defs/secret"}},
    )
    log_level: str = setting(
        "info",
        "`debug`, `info`, `warning` or `error`. Logs are JSON lines on stdout; the webhook line never holds a "
        "body or a secret.",
        key="logging.level",
        choices=("debug", "info", "warning", "error"),
    )
    tracing: TracingSettings = section(TracingSettings, "OpenTelemetry tracing.")
    dashboard: DashboardSettings = section(DashboardSettings, "The staff dashboard at `/payments/admin/`.")
    passthrough: PassthroughSettings = section(
        PassthroughSettings, "The sidecar as the pod's front door: other requests proxied unchanged to the app."
    )
    drain_delay: float = setting(
        0.0,
        "On SIGTERM readiness fails at once; the listener closes after this many seconds (let the load "
        "balancer notice).",
        key="shutdown.drain_delay",
        zero_ok=True,
    )
    shutdown_timeout: float = setting(
        25.0,
        "Seconds in-flight requests (and queue deliveries) get to finish after that. `drain_delay + timeout` "
        "must fit in the pod's `terminationGracePeriodSeconds`.",
        key="shutdown.timeout",
    )

    def webhook_url(self, provider: str) -> str:
        """Where ``provider``'s webhooks are sent: ``public_url`` (its path prefix kept) + the webhook route."""
        return self.public_url.rstrip("/") + routes.webhook_path(provider)
