"""Turn one provider's YAML (catalog preset merged with the gateway's entry) into a ProviderSpec.

The keys are declared in ``gateway/providers/entry.py`` and read by the generic reader; this
module adds what ties keys together (a signed payload's ``{id}`` needs ``id_header``, an asymmetric
algorithm needs public keys...), the gateway-wide defaults, and builds the frozen spec.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Any

from gateway.declare.read import read_section
from gateway.providers import readers
from gateway.providers.entry import ProviderEntry
from gateway.providers.keys import read_public_key, read_public_keys
from gateway.providers.schemes import CANONICALIZERS, SCHEMES
from gateway.providers.sections import ALGORITHMS, PaymentEntry, RateLimitEntry, SignatureEntry, TimestampEntry
from gateway.providers.spec import (
    ASYMMETRIC,
    HandshakeSpec,
    PaymentMap,
    ProviderSpec,
    PublicKey,
    RateLimit,
    SignatureSpec,
    TimestampSpec,
)
from gateway.reader import Errors, Reader
from gateway.secrets import Secret

__all__ = ["ALGORITHMS", "parse_provider", "parse_rate"]


def parse_provider(name: str, r: Reader, secrets: tuple[Secret, ...], defaults: dict[str, Any]) -> ProviderSpec:
    """Build the spec; ``defaults`` holds gateway-wide limits (body size, rate limit, dedup ttl)."""
    errors = Errors()
    entry = ProviderEntry(**read_section(ProviderEntry, r, errors))
    errors.raise_any()  # the checks below read keys that are known to be well-formed
    signature = None
    if entry.signature is not None:
        signature = _signature(r.sub("signature"), entry, secrets, r)
    elif not entry.allow_unsigned:
        r.fail("has no signature scheme; set allow_unsigned: true to accept unsigned webhooks", key="signature")
    timestamp = _timestamp(r.sub("timestamp"), entry.timestamp, signature) if entry.timestamp is not None else None
    if signature and "timestamp" in signature.payload.kinds and timestamp is None:
        r.fail("the signed payload uses {timestamp} but no timestamp is configured", key="timestamp")
    _check_responders(r.sub("handshake"), entry.handshake, signature)
    spec = _spec(name, entry, signature, timestamp, defaults)
    if signature is None:
        return spec
    signed_content = entry.dedup_signed_content
    return replace(
        spec, dedup_signed_content=spec.replayable_under_new_id() if signed_content is None else signed_content
    )


def _spec(
    name: str, e: ProviderEntry, signature: SignatureSpec | None, timestamp: TimestampSpec | None, d: dict[str, Any]
) -> ProviderSpec:
    """The entry with its defaults filled in: the name's, and the gateway-wide ones (``d``)."""
    forwarded = e.url_from_forwarded_headers
    return ProviderSpec(
        name=name,
        display_name=e.display_name or name,
        icon=e.icon,
        docs=e.docs,
        preset=e.preset,
        body=e.body,
        signature=signature,
        timestamp=timestamp,
        event_id=e.event_id,
        event_type=e.event_type,
        payment=_payment(e.payment),
        max_body_bytes=d["max_body_bytes"] if e.max_body_bytes is None else e.max_body_bytes,
        ip_allowlist=e.ip_allowlist,
        rate_limit=d["rate_limit"] if e.rate_limit is None else _rate(e.rate_limit),
        dedup_ttl=d["dedup_ttl"] if e.dedup_ttl is None else e.dedup_ttl,
        source=e.source or f"webhook-gateway/{name}",
        sample=e.sample,
        redact=e.redact,
        handshakes=e.handshake,
        shadow=e.shadow,
        url_from_forwarded_headers=d.get("url_from_forwarded_headers", False) if forwarded is None else forwarded,
        rotation_warn_after=_rotation_warn_after(e, d),
        min_secret_bytes=e.min_secret_bytes,
    )


def _rotation_warn_after(e: ProviderEntry, defaults: dict[str, Any]) -> float:
    if e.rotation_warn_after is not None:
        return e.rotation_warn_after
    default = defaults.get("rotation_warn_after")
    return readers.DEFAULT_ROTATION_WARN if default is None else float(default)


def _payment(p: PaymentEntry | None) -> PaymentMap | None:
    if p is None:
        return None
    return PaymentMap(p.id, p.status, p.status_map or {}, p.amount, p.amount_unit, p.currency, p.types)


def parse_rate(r: Reader) -> RateLimit:
    """A ``{rate, burst}`` mapping (``rate_limits.per_source``, ``per_provider``)."""
    errors = Errors()
    found = RateLimitEntry(**read_section(RateLimitEntry, r, errors))
    errors.raise_any()
    return _rate(found)


def _rate(found: RateLimitEntry) -> RateLimit:
    rate = float(found.rate)
    return RateLimit(rate=rate, burst=max(1, int(rate)) if found.burst is None else found.burst)


def _signature(r: Reader, e: ProviderEntry, secrets: tuple[Secret, ...], provider: Reader) -> SignatureSpec:
    """``provider`` is the whole entry: its public_keys, certificate and webhook_id belong to the scheme."""
    s = e.signature
    assert s is not None
    if s.style == "list" and not s.signature_keys:
        r.fail("is required when style is list", key="signature_keys")
    scheme = SCHEMES.get(s.canonicalizer)
    if not s.header and not (scheme and not scheme.uses_header):
        r.fail("is required", key="header")
    if "id" in s.payload.kinds and not s.id_header:
        r.fail("the signed payload uses {id} but signature.id_header is not set", key="id_header")
    if "webhook_id" in s.payload.kinds and not e.webhook_id:
        provider.fail("the signed payload uses {webhook_id}: set the webhook's id", key="webhook_id")
    public_algorithm, public_names = _public_scheme(r, s)
    public_keys = _public_keys(provider, public_algorithm)
    _check_keys(r, provider, s, secrets, public_keys)
    return SignatureSpec(
        algorithm=s.algorithm,
        header=s.header,
        encoding=s.encoding,
        payload=s.payload,
        secrets=tuple(decode_secret(r, one, s.secret_encoding, i) for i, one in enumerate(secrets)),
        style=s.style,
        prefix=s.prefix,
        prefix_optional=s.prefix_optional,
        item_separator=s.item_separator,
        kv_separator=s.kv_separator,
        signature_keys=s.signature_keys,
        timestamp_key=s.timestamp_key,
        id_header=s.id_header,
        canonicalizer=s.canonicalizer if s.canonicalizer in CANONICALIZERS else "",
        scheme=s.canonicalizer if s.canonicalizer in SCHEMES else "",
        public_keys=public_keys,
        public_algorithm=public_algorithm,
        public_signature_keys=public_names,
        webhook_id=e.webhook_id,
        certificate_header=s.certificate_header,
        certificate_hosts=s.certificate_hosts if s.certificate_header else (),
        repeated=s.repeated == "any",
    )


def _check_keys(
    r: Reader, provider: Reader, s: SignatureEntry, secrets: tuple[Secret, ...], public_keys: tuple[PublicKey, ...]
) -> None:
    if s.algorithm in ASYMMETRIC and secrets:
        provider.fail(f"{s.algorithm} verifies with public_keys, not secrets", key="secrets")
    if s.algorithm in ASYMMETRIC and not public_keys and not s.certificate_header:
        provider.fail(f"no public key configured for {s.algorithm} (add public_keys: [...])", key="public_keys")
    if s.algorithm not in ASYMMETRIC and not secrets and not public_keys:
        r.fail("no secrets configured for a signed provider (add secrets: [...])")


def _public_scheme(r: Reader, s: SignatureEntry) -> tuple[str, tuple[str, ...]]:
    """The public-key algorithm and, in a list header, the item names its signatures go under."""
    if s.algorithm in ASYMMETRIC:
        if s.public_key is not None:
            r.fail(
                f"is only for a public-key scheme beside an HMAC one; {s.algorithm} is one already", key="public_key"
            )
        return s.algorithm, s.signature_keys
    if s.public_key is None:
        return "", ()
    if s.style == "list" and not s.public_key.signature_keys:
        r.sub("public_key").fail("is required when style is list", key="signature_keys")
    return s.public_key.algorithm, s.public_key.signature_keys


def _public_keys(provider: Reader, algorithm: str) -> tuple[PublicKey, ...]:
    if not algorithm:
        for key in ("public_keys", "certificate"):
            if provider.has(key):
                provider.fail("this signature scheme has no public-key algorithm", key=key)
        return ()
    keys = read_public_keys(provider.sub("public_keys"), algorithm)
    if provider.has("certificate"):
        keys += (read_public_key(provider.sub("certificate"), algorithm),)
    return keys


def decode_secret(r: Reader, secret: Secret, encoding: str, index: int) -> Secret:
    raw = secret.reveal()
    if encoding == "raw":
        return secret
    if encoding == "whsec" and raw.startswith(b"whsec_"):
        raw = raw[len(b"whsec_") :]
    try:
        key = binascii.unhexlify(raw.strip()) if encoding == "hex" else base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        # SECURITY: name the secret's source, never its value.
        what = "hex" if encoding == "hex" else "base64"
        message = f"secret #{index} ({secret.label}) is not valid {what} for secret_encoding {encoding}"
        r.fail(message, key="secret_encoding")
    if not key:
        r.fail(f"secret #{index} ({secret.label}) decodes to nothing", key="secret_encoding")
    return Secret(key, secret.label)


def _timestamp(r: Reader, t: TimestampEntry, signature: SignatureSpec | None) -> TimestampSpec:
    if t.source == "header" and not t.header:
        r.fail("is required", key="header")
    if t.source == "json" and not t.path:
        r.fail("is required", key="path")
    scheme = SCHEMES.get(signature.scheme) if signature else None
    if t.source == "signature" and not (
        signature and (signature.timestamp_key or (scheme and scheme.carries_timestamp))
    ):
        r.fail("from: signature needs signature.timestamp_key", key="from")
    return TimestampSpec(
        source=t.source,
        header=t.header if t.source == "header" else "",
        format=t.format,
        tolerance=float(t.tolerance),
        path=t.path if t.source == "json" else (),
    )


def _check_responders(r: Reader, handshakes: tuple[HandshakeSpec, ...], signature: SignatureSpec | None) -> None:
    """A ``responder`` signs its answer with the provider's secret: it needs one."""
    if signature and signature.secrets:
        return
    for item, handshake in zip(readers.handshake_items(r), handshakes, strict=False):
        if handshake.responder:
            item.fail("this responder signs its answer with the provider's secret: configure secrets", key="responder")
