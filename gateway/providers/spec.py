"""Frozen provider specs: what the YAML catalog says about one provider, parsed once at start.

The request path reads only these types, never the YAML. ``parse.py`` builds them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.secrets import Secret

#: Placeholders of a signed-payload template, e.g. ``"{id}.{timestamp}.{body}"``.
PLACEHOLDERS = ("body", "timestamp", "id", "url")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled signed-payload template: literal bytes and named parts, in order.

    ``parts`` holds ``("lit", b"...")``, ``("body", "")``, ``("timestamp", "")``, ``("id", "")``,
    ``("url", "")`` or ``("header", "X-Name")``.
    """

    source: str
    parts: tuple[tuple[str, Any], ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(kind for kind, _ in self.parts)


@dataclass(frozen=True, slots=True)
class FieldRef:
    """Where a value lives: a request header, or a path into the JSON (or form) body."""

    header: str | None = None
    path: tuple[str | int, ...] = ()

    def describe(self) -> str:
        if self.header:
            return f"header {self.header}"
        return "body " + ".".join(str(p) for p in self.path)


@dataclass(frozen=True, slots=True)
class SignatureSpec:
    """How a provider signs: algorithm, where the signature is and what bytes were signed.

    ``style`` is ``plain`` (the whole header, after an optional ``prefix``) or ``list`` (items split
    by ``item_separator``, each ``key<kv_separator>value``; values under ``signature_keys`` are
    signatures, the value under ``timestamp_key`` is the timestamp), as Stripe's ``t=..,v1=..`` and
    Standard Webhooks' ``v1,sig v1,sig`` are.
    """

    algorithm: str
    header: str
    encoding: str
    payload: Template
    secrets: tuple[Secret, ...]
    style: str = "plain"
    prefix: str = ""
    item_separator: str = ","
    kv_separator: str = "="
    signature_keys: tuple[str, ...] = ()
    timestamp_key: str = ""
    id_header: str = ""
    canonicalizer: str = ""


@dataclass(frozen=True, slots=True)
class TimestampSpec:
    """Where the signed timestamp is, how it is written and how far from now it may be."""

    source: str  # "signature" (the list item named timestamp_key), "header", or "json" (a body field)
    header: str
    format: str  # unix | unix_ms | iso8601
    tolerance: float  # seconds, both into the past and into the future
    path: tuple[str | int, ...] = ()  # for source "json": where in the (signed) JSON body


@dataclass(frozen=True, slots=True)
class PaymentMap:
    """Paths to the normalized payment fields in the provider's payload."""

    id: tuple[FieldRef, ...]
    status: tuple[FieldRef, ...] = ()
    status_map: Mapping[str, str] = field(default_factory=dict)
    amount: tuple[FieldRef, ...] = ()
    amount_unit: str = "major"  # "minor": integer cents, scaled by the currency's exponent
    currency: tuple[FieldRef, ...] = ()
    types: tuple[str, ...] = ()  # fnmatch patterns of event types that carry a payment; () = all


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A GCRA limit: ``rate`` requests per second on average, ``burst`` at once."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One configured provider, catalog preset and gateway overrides merged."""

    name: str
    display_name: str
    icon: str
    docs: str
    preset: str
    body: str  # json | form | any
    signature: SignatureSpec | None  # None only when the config allows unsigned traffic
    timestamp: TimestampSpec | None
    event_id: tuple[FieldRef, ...]
    event_type: tuple[FieldRef, ...]
    payment: PaymentMap | None
    max_body_bytes: int
    ip_allowlist: tuple[Network, ...]
    rate_limit: RateLimit | None
    dedup_ttl: float
    source: str
    sample: Any = None  # an example payload, for `webhook-gateway send`
    redact: tuple[tuple[str | int, ...], ...] = ()  # JSON paths masked in the stored copy

    @property
    def algorithm_label(self) -> str:
        """``HMAC-SHA256`` style, as the seed's providers endpoint shows it."""
        if self.signature is None:
            return "none"
        return self.signature.algorithm.upper()
