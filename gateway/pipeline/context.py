"""The one typed per-request context that every stage reads and writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import CIMultiDictProxy

from gateway.events.attempts import Attempt
from gateway.providers.spec import ProviderSpec

#: Called by the runner once the request is answered; ``ok`` is True when the event was accepted.
Cleanup = Callable[["RequestContext", bool], Awaitable[None]]
UNPARSED: Any = object()


class Content(Protocol):
    """What the body stage reads of the body stream (``aiohttp.StreamReader``, or the lean path's)."""

    @property
    def total_bytes(self) -> int: ...
    async def readexactly(self, n: int, /) -> bytes: ...
    async def readany(self) -> bytes: ...


class RawPath(Protocol):
    @property
    def raw_path_qs(self) -> str: ...


class WebhookRequest(Protocol):
    """What the stages read of a request: ``aiohttp.web.Request`` has it, and so does
    ``gateway.lean.request.LeanRequest`` (the lean server path's request)."""

    @property
    def method(self) -> str: ...
    @property
    def match_info(self) -> Mapping[str, str]: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content(self) -> Content: ...
    @property
    def content_type(self) -> str: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def rel_url(self) -> RawPath: ...


@dataclass(slots=True)
class Reply:
    """A non-error answer a stage chose (forwarded, duplicate, handshake): it ends the chain.

    ``raw``, when set, is sent as is with ``content_type`` instead of ``body`` as JSON (a
    handshake that must answer text, or nothing).
    """

    status: int
    outcome: str
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass(slots=True, eq=False)
class RequestContext:
    """What is known about one webhook request so far. Stages fill it in, in pipeline order."""

    request: WebhookRequest
    started: float
    provider: ProviderSpec | None = None
    body: bytes = b""
    client_ip: str = ""
    secret_index: int = -1
    timestamp: float | None = None
    document: Any = UNPARSED  # the parsed JSON or form body, once a stage needed it
    signed_body: bytes = b""  # the canonical form the provider signed, when verify computed one
    signed_payloads: tuple[bytes, ...] = ()  # what the signature was checked over (dedup's replay digest)
    event_id: str = ""
    event_type: str = ""
    dedup_key: str = ""
    event: bytes = b""  # the normalized CloudEvents envelope
    upstream_status: int = 0  # the upstream's 2xx, once forwarded (sync mode)
    attempts: list[Attempt] | None = None  # the forwarder's tries (sync mode), stored with the event
    traceparent: str = ""
    reply: Reply | None = None
    cleanups: list[Cleanup] = field(default_factory=list)

    @property
    def provider_name(self) -> str:
        # SECURITY: an unknown provider's name comes from the URL; never use it as a metric label.
        return self.provider.name if self.provider else "unknown"
