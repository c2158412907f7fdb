"""The one generic verifier: runs a provider's scheme over the raw request, then checks keys and time.

The scheme (the YAML template by default, or one in ``schemes/``) reads the signatures and the
bytes they sign; this module tries every configured key (rotation) against every signature in
constant time, and checks the signed timestamp. It fails closed: anything it cannot parse is a
401, never a pass and never a 500.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from multidict import CIMultiDictProxy

from gateway import jsonutil
from gateway.errors import Rejection
from gateway.providers.schemes import SCHEMES, TEMPLATE
from gateway.providers.schemes.base import DIGESTS, Part
from gateway.providers.spec import ProviderSpec, PublicKey, SignatureSpec, TimestampSpec


@dataclass(frozen=True, slots=True)
class Verified:
    secret_index: int  # which configured key matched (secrets, then public keys): the rotation metric's label
    timestamp: float | None  # the signed timestamp (unix seconds), when the scheme has one
    signed_body: bytes = b""  # a body canonicalizer's form of the body, as signed (for content ids)
    document: Any = None  # the body parsed, when the timestamp had to be read from it
    # Every candidate payload the signature was checked over: a function of the signed inputs
    # only (body forms, signed timestamp, headers, URL), so the same signed content gives the
    # same tuple (dedup's replay digest). References, not copies.
    signed_payloads: tuple[bytes, ...] = ()


def verify(
    provider: ProviderSpec,
    headers: CIMultiDictProxy[str] | Mapping[str, str],
    body: bytes,
    url: str,
    now: float,
    public_keys: tuple[PublicKey, ...] | None = None,
) -> Verified:
    """Check ``body`` and ``headers`` against ``provider``'s scheme, or raise a 401 ``Rejection``.

    Order: the signatures are read first (missing or malformed: 401 before any MAC is computed),
    then the timestamp's form, then the signature, then the timestamp's tolerance, so
    ``stale_timestamp`` is only ever reported for a request the provider really signed (a replay
    or a skewed clock). ``public_keys`` replaces the configured ones (PayPal's certificate,
    fetched by the caller).
    """
    spec = provider.signature
    if spec is None:  # allowed only by an explicit `allow_unsigned: true`
        return Verified(-1, None)
    parts, raw_ts, canonical = SCHEMES.get(spec.scheme, TEMPLATE).read(provider, headers, body, url)
    ts = None
    if provider.timestamp and provider.timestamp.source != "json":
        if raw_ts is None:
            raise Rejection("invalid_signature", f"{spec.header or 'the request'} carries no timestamp")
        fmt = provider.timestamp.format
        ts = parse_timestamp(fmt, raw_ts)
        if ts is None:
            raise Rejection("invalid_signature", f"the signed timestamp {raw_ts!r:.40} is not a {fmt} time")
    index, matched = match_key(spec, parts, spec.public_keys if public_keys is None else public_keys)
    if index < 0:
        raise Rejection("invalid_signature", "no configured key produces this signature")
    document = None
    if provider.timestamp and provider.timestamp.source == "json":
        # Inside the signed body: read after the MAC, parsed once for every stage after this one.
        ts, document = _body_timestamp(provider.timestamp, body)
    if provider.timestamp and ts is not None:
        check_tolerance(provider.timestamp, ts, now)
    return Verified(index, ts, canonical, document, matched)


def _body_timestamp(spec: TimestampSpec, body: bytes) -> tuple[float, Any]:
    """A timestamp field of the signed JSON body (Linear's ``webhookTimestamp``, say), and the
    parsed body (the pipeline reuses it)."""
    try:
        parsed: Any = jsonutil.loads(body)
    except jsonutil.JSONDecodeError:
        raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None
    doc = jsonutil.follow(parsed, spec.path)
    if isinstance(doc, bool) or not isinstance(doc, int | str):
        raise Rejection("invalid_signature", "the signed body carries no timestamp")
    ts = parse_timestamp(spec.format, str(doc))
    if ts is None:
        raise Rejection("invalid_signature", f"the signed timestamp {str(doc)!r:.40} is not a {spec.format} time")
    return ts, parsed


_K = TypeVar("_K")  # a secret's bytes or a public key


def match_key(
    spec: SignatureSpec, parts: tuple[Part, ...], public_keys: tuple[PublicKey, ...]
) -> tuple[int, tuple[bytes, ...]]:
    """The index of the first key under which every part carries a valid signature
    (``spec.secrets`` first, then ``public_keys``), with the payloads those signatures are over,
    distinct and sorted: what a replay would carry again, whatever else it adds or respells
    (an item sent twice, a boolean written another way). ``(-1, ())`` when no key does."""
    for index, secret in enumerate(spec.secrets):
        key = secret.reveal()
        if (signed := _every_part(parts, _secret_match, key)) is not None:
            return index, signed
    for offset, public in enumerate(public_keys):
        if (signed := _every_part(parts, _public_match, public)) is not None:
            return len(spec.secrets) + offset, signed
    return -1, ()


def _every_part(
    parts: tuple[Part, ...], match: Callable[[_K, Part], bytes | None], key: _K
) -> tuple[bytes, ...] | None:
    """The payloads ``match(key, part)`` finds signed, one per part, distinct and sorted; None if
    a part has none."""
    matched = []
    for part in parts:
        payload = match(key, part)
        if payload is None:
            return None
        matched.append(payload)
    return (matched[0],) if len(matched) == 1 else tuple(sorted(set(matched)))


def _secret_match(key: bytes, part: Part) -> bytes | None:
    """The payload a signature of ``part`` is a MAC of under ``key`` (a token: the first), or None."""
    macs: dict[str, list[bytes]] = {}
    for algorithm, sig in part.signatures:
        if algorithm == "token":
            if hmac.compare_digest(key, sig):
                return part.payloads[0] if part.payloads else b""
            continue
        digest = DIGESTS.get(algorithm)
        if digest is None:
            continue
        found = macs.get(algorithm)
        if found is None:  # one-shot HMACs (no HMAC object), each computed once per algorithm
            found = macs[algorithm] = [hmac.digest(key, payload, digest) for payload in part.payloads]
        for payload, mac in zip(part.payloads, found, strict=True):
            if hmac.compare_digest(mac, sig):
                return payload
    return None


def _public_match(public: PublicKey, part: Part) -> bytes | None:
    for algorithm, sig in part.signatures:
        if algorithm != public.algorithm:
            continue
        for payload in part.payloads:
            if _signature_valid(public, sig, payload):
                return payload
    return None


def _signature_valid(public: PublicKey, sig: bytes, payload: bytes) -> bool:
    key: Any = public.key
    try:
        if public.algorithm == "ed25519":
            key.verify(sig, payload)
        elif public.algorithm == "ecdsa-p256-sha256":
            key.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(sig, payload, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def check_tolerance(spec: TimestampSpec, ts: float, now: float) -> float:
    """Both directions: too old is a replay, too far in the future a clock we cannot trust."""
    if abs(now - ts) > spec.tolerance:
        direction = "old" if ts < now else "far in the future"
        raise Rejection("stale_timestamp", f"the signed timestamp is too {direction} (tolerance {spec.tolerance:g}s)")
    return ts


def parse_timestamp(fmt: str, raw: str) -> float | None:
    """Unix seconds, or ``None`` when ``raw`` is not a ``fmt`` time (only ASCII digits for unix)."""
    if fmt in ("unix", "unix_ms"):
        if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
            return None
        return int(raw) / (1000.0 if fmt == "unix_ms" else 1.0)
    if not raw.isascii():
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parsed.timestamp() if parsed.tzinfo else None
    except (ValueError, OverflowError):
        return None
