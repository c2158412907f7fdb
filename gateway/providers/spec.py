"""Frozen provider specs: what the YAML catalog says about one provider, parsed once at start.

The request path reads only these types, never the YAML. ``parse.py`` builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.addresses import Network
from gateway.secrets import Secret

#: Placeholders of a signed-payload template, e.g. ``"{id}.{timestamp}.{body}"``, and those that
#: stand for a value of the provider's config (``{webhook_id}``: PayPal signs its webhook's id).
PLACEHOLDERS = ("body", "timestamp", "id", "url")
CONFIG_PLACEHOLDERS = ("webhook_id",)
#: Algorithms whose key is a shared secret (``token``: the header carries the secret itself).
SYMMETRIC = ("hmac-sha1", "hmac-sha256", "hmac-sha512", "token")
#: Algorithms verified with a public key (``public_keys``, or a certificate).
ASYMMETRIC = ("ed25519", "ecdsa-p256-sha256", "rsa-sha256")

#: Schemes in code (``gateway/providers/schemes/``) by whether their signature covers the
#: whole body: Twilio signs every form parameter (or the body's SHA-256); Adyen signs a few fields
#: of each item and Mailgun only a timestamp and a token, so the rest of their bodies is unsigned.
SIGNS_BODY = {"twilio": True, "adyen": False, "mailgun": False}


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled signed-payload template: literal bytes and named parts, in order.

    ``parts`` holds ``("lit", b"...")``, ``("body", "")``, ``("timestamp", "")``, ``("id", "")``,
    ``("url", "")`` or ``("header", "X-Name")``.
    """

    source: str
    parts: tuple[tuple[str, Any], ...]
    signs_url: bool = field(init=False)  # a ``{url}`` part: the verifier needs the public URL

    def __post_init__(self) -> None:
        object.__setattr__(self, "signs_url", any(kind == "url" for kind, _ in self.parts))

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


@dataclass(frozen=True, slots=True, repr=False)
class PublicKey:
    """A provider's public key (a ``cryptography`` key object) and where it came from."""

    algorithm: str  # one of ASYMMETRIC
    key: Any
    label: str

    def __repr__(self) -> str:
        return f"PublicKey({self.algorithm}, {self.label})"


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
    prefix_optional: bool = False  # the header is accepted without its prefix too (Mollie's own library does)
    item_separator: str = ","
    kv_separator: str = "="
    signature_keys: tuple[str, ...] = ()
    timestamp_key: str = ""
    id_header: str = ""
    canonicalizer: str = ""  # a body canonicalizer: {body} is the body as re-serialized (schemes/template.py)
    scheme: str = ""  # a scheme in code (schemes/): Twilio, Adyen, Mailgun; "" is the YAML template
    public_keys: tuple[PublicKey, ...] = ()
    public_algorithm: str = ""
    public_signature_keys: tuple[str, ...] = ()
    webhook_id: str = field(default="", repr=False)  # {webhook_id}: PayPal signs its webhook's id
    certificate_header: str = ""
    certificate_hosts: tuple[str, ...] = ()
    repeated: bool = False  # the signature header may come several times (Mollie, rotating): any copy may match


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
class Condition:
    """One test of a handshake's ``when``: a value equals ``equals``, or is ``absent``."""

    ref: FieldRef
    equals: Any = None
    absent: bool = False


@dataclass(frozen=True, slots=True)
class HandshakeSpec:
    """A request the gateway answers itself (signed, verified, never forwarded): a provider
    checking the endpoint. The reply is ``json`` or ``text`` with ``{json:path}`` and
    ``{header:Name}`` filled in, or comes from the named ``responder`` in code (Zoom's HMAC)."""

    name: str
    when: tuple[Condition, ...]
    status: int = 200
    json: Any = None
    text: str | None = None
    responder: str = ""


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
    handshakes: tuple[HandshakeSpec, ...] = ()
    shadow: bool = False  # verification failures are counted and logged, and the event forwarded
    url_from_forwarded_headers: bool = False  # the signed URL from X-Forwarded-Proto/-Host of a trusted proxy
    rotation_warn_after: float = 7 * 24 * 3600.0  # `check` warns when a non-first key is unused this long
    min_secret_bytes: int = 0  # the shortest key the provider documents; `check` warns below it
    # Remember the digest of the signed content too (for dedup_ttl): a second event id over the
    # same signed bytes is a replay. On by default where the event id is not signed.
    dedup_signed_content: bool = False

    def replayable_under_new_id(self) -> bool:
        """Whether a captured body and signature could be sent again under a fresh event id:
        the id (or, without one, the body it is hashed from) is not all covered by the signature,
        as GitHub's X-GitHub-Delivery header or Mailgun's unsigned event-data. False for
        ``token`` schemes (nothing is signed: whoever has the token can send anything anyway)."""
        sig = self.signature
        if sig is None or sig.algorithm == "token":
            return False
        scheme = SIGNS_BODY.get(sig.scheme)
        # A CRC32 of the body (PayPal) is a checksum, not a binding: whitespace can be reshuffled
        # to keep it while the content changes, so the body counts as unsigned.
        body_signed = scheme if scheme is not None else "body" in sig.payload.kinds and sig.canonicalizer != "crc32"
        signed_headers = {name.lower() for kind, name in sig.payload.parts if kind == "header"}
        if "id" in sig.payload.kinds and sig.id_header:
            signed_headers.add(sig.id_header.lower())
        headers = (ref.header.lower() for ref in self.event_id if ref.header)
        return not body_signed or not all(name in signed_headers for name in headers)

    @property
    def algorithm_label(self) -> str:
        """``HMAC-SHA256`` style, as the seed's providers endpoint shows it."""
        if self.signature is None:
            return "none"
        return self.signature.algorithm.upper()
