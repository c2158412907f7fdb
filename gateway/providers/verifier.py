"""The one generic verifier: interprets a provider's ``SignatureSpec`` over the raw request.

It never re-serializes the body (unless the provider's scheme names a canonicalizer), compares
in constant time, tries every configured secret (rotation) against every signature the header
carries, and fails closed: anything it cannot parse is a 401, never a pass and never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from multidict import CIMultiDictProxy

from gateway import jsonutil
from gateway.errors import Rejection
from gateway.providers import canonical
from gateway.providers.request import SignedRequest, getall, single_header, wire_bytes
from gateway.providers.schemes import SCHEMES
from gateway.providers.spec import ProviderSpec, PublicKey, SignatureSpec, TimestampSpec

DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}
SIZES = {"hmac-sha1": 20, "hmac-sha256": 32, "hmac-sha512": 64}
#: Decoded signature lengths: Ed25519 is fixed, an ECDSA P-256 DER sequence 8 to 72 bytes, RSA
#: the modulus size (2048 to 8192 bits).
ASYMMETRIC_SIZES = {"ed25519": (64, 64), "ecdsa-p256-sha256": (8, 72), "rsa-sha256": (256, 1024)}
#: One decoded signature and the algorithm it is for.
Signature = tuple[str, bytes]


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


@dataclass(frozen=True, slots=True)
class _Part:
    signatures: tuple[Signature, ...]
    payloads: tuple[bytes, ...]


def verify(
    provider: ProviderSpec,
    headers: CIMultiDictProxy[str] | Mapping[str, str],
    body: bytes,
    url: str,
    now: float,
    public_keys: tuple[PublicKey, ...] | None = None,
) -> Verified:
    """Check ``body`` and ``headers`` against ``provider``'s scheme, or raise a 401 ``Rejection``.

    Order: the headers are parsed first (missing or malformed: 401 before any MAC is computed),
    then the signature, then the timestamp's tolerance, so ``stale_timestamp`` is only ever
    reported for a request the provider really signed (a replay or a skewed clock).
    ``public_keys`` replaces the configured ones (PayPal's certificate, fetched by the caller).
    """
    spec = provider.signature
    if spec is None:  # allowed only by an explicit `allow_unsigned: true`
        return Verified(-1, None)
    scheme = SCHEMES.get(spec.canonicalizer)
    parts: tuple[_Part, ...] = ()
    if scheme is not None:
        parts, raw_ts = _scheme_parts(spec, headers, body, url)
    elif spec.repeated:
        signatures, raw_ts = _parse_repeated(spec, headers)
    else:
        signatures, raw_ts = _parse_header(spec, single_header(headers, spec.header))
    ts = None
    if provider.timestamp and provider.timestamp.source != "json":
        if provider.timestamp.source == "header":
            raw_ts = single_header(headers, provider.timestamp.header)
        if raw_ts is None:
            raise Rejection("invalid_signature", f"{spec.header or 'the request'} carries no timestamp")
        fmt = provider.timestamp.format
        ts = parse_timestamp(fmt, raw_ts)
        if ts is None:
            raise Rejection("invalid_signature", f"the signed timestamp {raw_ts!r:.40} is not a {fmt} time")
    bodies: tuple[bytes, ...] = (body,)
    if scheme is None:
        signed_id = single_header(headers, spec.id_header) if spec.id_header else ""
        bodies = candidate_bodies(spec, body)
        parts = (_Part(tuple(signatures), signed_payloads(spec, headers, bodies, url, raw_ts or "", signed_id)),)
    index = match_key(spec, parts, spec.public_keys if public_keys is None else public_keys)
    if index < 0:
        raise Rejection("invalid_signature", "no configured key produces this signature")
    document = None
    if provider.timestamp and provider.timestamp.source == "json":
        # Inside the signed body: read after the MAC, parsed once for every stage after this one.
        ts, document = _body_timestamp(provider.timestamp, body)
    if provider.timestamp and ts is not None:
        check_tolerance(provider.timestamp, ts, now)
    canonical_form = bodies[0] if spec.canonicalizer and scheme is None else b""
    return Verified(index, ts, canonical_form, document, tuple(p for part in parts for p in part.payloads))


def _scheme_parts(
    spec: SignatureSpec, headers: CIMultiDictProxy[str] | Mapping[str, str], body: bytes, url: str
) -> tuple[tuple[_Part, ...], str | None]:
    """A request canonicalizer's signed parts, their signatures decoded."""
    try:
        signed = SCHEMES[spec.canonicalizer].parse(SignedRequest(headers, body, url), spec.header)
    except ValueError:
        raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None
    parts = []
    for part in signed.parts:
        algorithm = part.algorithm or spec.algorithm
        sigs = (_decode(spec.encoding, algorithm, text) for text in part.signatures)
        decoded = tuple((algorithm, sig) for sig in sigs if sig)
        if not decoded:
            raise Rejection("invalid_signature", f"the signature is not a {spec.encoding} {algorithm} signature")
        parts.append(_Part(decoded, part.payloads))
    return tuple(parts), signed.timestamp


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


def _parse_header(spec: SignatureSpec, value: str) -> tuple[list[Signature], str | None]:
    """The decoded signatures in the header, and the timestamp item if the scheme puts one there.

    Items are split exactly as the providers' SDKs split them (no whitespace trimming: Stripe's
    ``t=1, v1=..`` fails in ``stripe.WebhookSignature`` too), so we accept what they accept.
    """
    if spec.style == "plain":
        if spec.prefix:
            if value.startswith(spec.prefix):
                value = value[len(spec.prefix) :]
            elif not spec.prefix_optional:
                raise Rejection("invalid_signature", f"{spec.header} does not start with {spec.prefix!r}")
        sig = _decode(spec.encoding, spec.algorithm, value)
        if sig is None:
            raise Rejection("invalid_signature", f"{spec.header} is not a {spec.encoding} {spec.algorithm} signature")
        return [(spec.algorithm, sig)], None
    signatures: list[Signature] = []
    timestamp = None
    for item in value.split(spec.item_separator):
        key, sep, val = item.partition(spec.kv_separator)
        if not sep:
            continue
        algorithm = spec.algorithm if key in spec.signature_keys else ""
        if key in spec.public_signature_keys:
            algorithm = spec.public_algorithm
        if algorithm:
            sig = _decode(spec.encoding, algorithm, val)
            if sig is not None:  # an undecodable entry is skipped, as a non-matching one would be
                signatures.append((algorithm, sig))
        elif key == spec.timestamp_key:
            if timestamp is not None:
                raise Rejection("invalid_signature", f"{spec.header} carries two timestamps")
            timestamp = val
    if not signatures:
        names = "/".join((*spec.signature_keys, *spec.public_signature_keys))
        raise Rejection("invalid_signature", f"{spec.header} has no valid {names} signature")
    return signatures, timestamp


def _parse_repeated(
    spec: SignatureSpec, headers: CIMultiDictProxy[str] | Mapping[str, str]
) -> tuple[list[Signature], str | None]:
    """``repeated: any``: every copy of the header is read (Mollie sends one per active secret
    while a secret is rotated); a malformed copy is skipped, as a non-matching one would be."""
    values = [v.strip(" \t") for v in getall(headers, spec.header)]
    values = [v for v in values if v]
    if not values:
        raise Rejection("missing_signature", f"the {spec.header} header is missing")
    signatures: list[Signature] = []
    timestamps: set[str] = set()
    error: Rejection | None = None
    for value in values[:16]:
        try:
            found, ts = _parse_header(spec, value)
        except Rejection as exc:
            error = exc
            continue
        signatures += found
        timestamps |= {ts} if ts is not None else set()
    if len(timestamps) > 1:
        raise Rejection("invalid_signature", f"the copies of {spec.header} carry different timestamps")
    if not signatures:
        raise error or Rejection("invalid_signature", f"{spec.header} has no valid signature")
    return signatures, next(iter(timestamps), None)


def _decode(encoding: str, algorithm: str, text: str) -> bytes | None:
    """The signature bytes, only from the one canonical spelling the provider writes.

    Providers compare the encoded strings (stripe and slack_sdk: lowercase hex; GitHub's and
    NOWPayments' examples; Shopify's and Standard Webhooks' JavaScript libraries: padded base64),
    so ``ABCD..`` for ``abcd..``, or base64 whose unused trailing bits are set, is a different
    signature to them: we refuse it too rather than accept a malleable encoding. A ``token`` is
    the header's text itself.
    """
    if algorithm == "token":
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return None
    if not text.isascii():
        return None
    try:
        if encoding == "hex":
            raw = binascii.unhexlify(text)  # unlike bytes.fromhex, no whitespace is accepted
            canonical_text = raw.hex()
        elif encoding == "base64":
            raw = base64.b64decode(text, validate=True)
            canonical_text = base64.b64encode(raw).decode()
        else:  # base64url, unpadded or exactly padded
            bare = text.rstrip("=")
            raw = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
            canonical_text = base64.urlsafe_b64encode(raw).decode()
            if bare == text:
                canonical_text = canonical_text.rstrip("=")
    except (binascii.Error, ValueError):
        return None
    if text != canonical_text:
        return None
    low, high = ASYMMETRIC_SIZES.get(algorithm) or (SIZES[algorithm], SIZES[algorithm])
    return raw if low <= len(raw) <= high else None


def candidate_bodies(spec: SignatureSpec, body: bytes) -> tuple[bytes, ...]:
    """The body as the provider may have signed it: the raw bytes, or a canonicalizer's forms
    (the preferred first)."""
    if not spec.canonicalizer:
        return (body,)
    try:
        return canonical.REGISTRY[spec.canonicalizer](body)
    except ValueError:
        raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None


def signed_payloads(
    spec: SignatureSpec,
    headers: CIMultiDictProxy[str] | Mapping[str, str],
    bodies: tuple[bytes, ...],
    url: str,
    timestamp: str,
    signed_id: str,
) -> tuple[bytes, ...]:
    """Render the signed-payload template over each candidate body."""
    parts = spec.payload.parts
    if len(parts) == 1 and parts[0][0] == "body":
        return bodies  # the common case: the raw bytes themselves
    out = []
    for candidate in bodies:
        chunks = []
        for kind, arg in parts:
            if kind == "lit":
                chunks.append(arg)
            elif kind == "body":
                chunks.append(candidate)
            elif kind == "timestamp":
                chunks.append(wire_bytes(timestamp, "timestamp"))
            elif kind == "id":
                chunks.append(wire_bytes(signed_id, spec.id_header))
            elif kind == "url":
                chunks.append(wire_bytes(url, "URL"))
            elif kind == "webhook_id":
                chunks.append(spec.webhook_id.encode())
            else:
                chunks.append(wire_bytes(single_header(headers, arg), arg))
        out.append(b"".join(chunks))
    return tuple(out)


def match_key(spec: SignatureSpec, parts: tuple[_Part, ...], public_keys: tuple[PublicKey, ...]) -> int:
    """The index of the first key under which every part carries a valid signature, else -1:
    ``spec.secrets`` first, then ``public_keys``."""
    for index, secret in enumerate(spec.secrets):
        key = secret.reveal()
        if all(_secret_matches(key, part) for part in parts):
            return index
    for offset, public in enumerate(public_keys):
        if all(_public_matches(public, part) for part in parts):
            return len(spec.secrets) + offset
    return -1


def _secret_matches(key: bytes, part: _Part) -> bool:
    macs: dict[str, list[bytes]] = {}
    for algorithm, sig in part.signatures:
        if algorithm == "token":
            if hmac.compare_digest(key, sig):
                return True
            continue
        digest = DIGESTS.get(algorithm)
        if digest is None:
            continue
        if algorithm not in macs:
            macs[algorithm] = [
                hmac.digest(key, payload, digest) for payload in part.payloads
            ]  # one-shot: no HMAC object
        if any(hmac.compare_digest(mac, sig) for mac in macs[algorithm]):
            return True
    return False


def _public_matches(public: PublicKey, part: _Part) -> bool:
    for algorithm, sig in part.signatures:
        if algorithm != public.algorithm:
            continue
        for payload in part.payloads:
            if _signature_valid(public, sig, payload):
                return True
    return False


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
