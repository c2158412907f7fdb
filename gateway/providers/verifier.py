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
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from multidict import CIMultiDictProxy

from gateway.errors import Rejection
from gateway.providers import canonical
from gateway.providers.spec import ProviderSpec, SignatureSpec, TimestampSpec

DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}
SIZES = {"hmac-sha1": 20, "hmac-sha256": 32, "hmac-sha512": 64}


@dataclass(frozen=True, slots=True)
class Verified:
    secret_index: int  # which configured secret matched: the rotation metric's label
    timestamp: float | None  # the signed timestamp (unix seconds), when the scheme has one


def verify(
    provider: ProviderSpec,
    headers: CIMultiDictProxy[str] | Mapping[str, str],
    body: bytes,
    url: str,
    now: float,
) -> Verified:
    """Check ``body`` and ``headers`` against ``provider``'s scheme, or raise a 401 ``Rejection``.

    Order: the headers are parsed first (missing or malformed: 401 before any HMAC is computed),
    then the signature, then the timestamp's tolerance, so ``stale_timestamp`` is only ever
    reported for a request the provider really signed (a replay or a skewed clock).
    """
    spec = provider.signature
    if spec is None:  # allowed only by an explicit `allow_unsigned: true`
        return Verified(-1, None)
    value = _single_header(headers, spec.header)
    signatures, raw_ts = _parse_header(spec, value)
    ts = None
    if provider.timestamp and provider.timestamp.source != "json":
        if provider.timestamp.source == "header":
            raw_ts = _single_header(headers, provider.timestamp.header)
        if raw_ts is None:
            raise Rejection("invalid_signature", f"{spec.header} carries no timestamp")
        fmt = provider.timestamp.format
        ts = parse_timestamp(fmt, raw_ts)
        if ts is None:
            raise Rejection("invalid_signature", f"the signed timestamp {raw_ts!r:.40} is not a {fmt} time")
    signed_id = _single_header(headers, spec.id_header) if spec.id_header else ""
    payloads = signed_payloads(spec, headers, body, url, raw_ts or "", signed_id)
    index = match_secret(spec, payloads, signatures)
    if index < 0:
        raise Rejection("invalid_signature", "no configured secret produces this signature")
    if provider.timestamp and provider.timestamp.source == "json":
        ts = _body_timestamp(provider.timestamp, body)  # inside the signed body: read after the HMAC
    if provider.timestamp and ts is not None:
        check_tolerance(provider.timestamp, ts, now)
    return Verified(index, ts)


def _body_timestamp(spec: TimestampSpec, body: bytes) -> float:
    """A timestamp field of the signed JSON body (Linear's ``webhookTimestamp``, say)."""
    try:
        doc: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None
    for step in spec.path:
        if isinstance(doc, dict):
            doc = doc.get(step)
        elif isinstance(doc, list) and isinstance(step, int) and step < len(doc):
            doc = doc[step]
        else:
            doc = None
    if isinstance(doc, bool) or not isinstance(doc, int | str):
        raise Rejection("invalid_signature", "the signed body carries no timestamp")
    ts = parse_timestamp(spec.format, str(doc))
    if ts is None:
        raise Rejection("invalid_signature", f"the signed timestamp {str(doc)!r:.40} is not a {spec.format} time")
    return ts


def _single_header(headers: CIMultiDictProxy[str] | Mapping[str, str], name: str) -> str:
    values = headers.getall(name, []) if isinstance(headers, CIMultiDictProxy) else _getall(headers, name)
    if not values:
        raise Rejection("missing_signature", f"the {name} header is missing")
    if len(values) > 1:
        raise Rejection("invalid_signature", f"the {name} header is sent more than once")
    value: str = values[0].strip(" \t")  # HTTP's optional whitespace only: the rest was signed
    if not value:
        raise Rejection("missing_signature", f"the {name} header is empty")
    return value


def _getall(headers: Mapping[str, str], name: str) -> list[str]:
    lname = name.lower()
    return [v for k, v in headers.items() if k.lower() == lname]


def _parse_header(spec: SignatureSpec, value: str) -> tuple[list[bytes], str | None]:
    """The decoded signatures in the header, and the timestamp item if the scheme puts one there.

    Items are split exactly as the providers' SDKs split them (no whitespace trimming: Stripe's
    ``t=1, v1=..`` fails in ``stripe.WebhookSignature`` too), so we accept what they accept.
    """
    if spec.style == "plain":
        if spec.prefix:
            if not value.startswith(spec.prefix):
                raise Rejection("invalid_signature", f"{spec.header} does not start with {spec.prefix!r}")
            value = value[len(spec.prefix) :]
        sig = _decode(spec, value)
        if sig is None:
            raise Rejection("invalid_signature", f"{spec.header} is not a {spec.encoding} {spec.algorithm} signature")
        return [sig], None
    signatures: list[bytes] = []
    timestamp = None
    for item in value.split(spec.item_separator):
        key, sep, val = item.partition(spec.kv_separator)
        if not sep:
            continue
        if key in spec.signature_keys:
            sig = _decode(spec, val)
            if sig is not None:  # an undecodable entry is skipped, as a non-matching one would be
                signatures.append(sig)
        elif key == spec.timestamp_key:
            if timestamp is not None:
                raise Rejection("invalid_signature", f"{spec.header} carries two timestamps")
            timestamp = val
    if not signatures:
        names = "/".join(spec.signature_keys)
        raise Rejection("invalid_signature", f"{spec.header} has no valid {names} signature")
    return signatures, timestamp


def _decode(spec: SignatureSpec, text: str) -> bytes | None:
    """The MAC bytes, only from the one canonical spelling the provider writes.

    Providers compare the encoded strings (stripe and slack_sdk: lowercase hex; GitHub's and
    NOWPayments' examples; Shopify's and Standard Webhooks' JavaScript libraries: padded base64),
    so ``ABCD..`` for ``abcd..``, or base64 whose unused trailing bits are set, is a different
    signature to them: we refuse it too rather than accept a malleable encoding.
    """
    if not text.isascii():
        return None
    try:
        if spec.encoding == "hex":
            raw = binascii.unhexlify(text)  # unlike bytes.fromhex, no whitespace is accepted
            canonical_text = raw.hex()
        elif spec.encoding == "base64":
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
    if len(raw) != SIZES[spec.algorithm] or text != canonical_text:
        return None
    return raw


def signed_payloads(
    spec: SignatureSpec,
    headers: CIMultiDictProxy[str] | Mapping[str, str],
    body: bytes,
    url: str,
    timestamp: str,
    signed_id: str,
) -> tuple[bytes, ...]:
    """Render the signed-payload template; a canonicalizer may yield several candidate bodies."""
    bodies: tuple[bytes, ...] = (body,)
    if spec.canonicalizer:
        try:
            bodies = canonical.REGISTRY[spec.canonicalizer](body)
        except ValueError:
            raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None
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
                chunks.append(_wire_bytes(timestamp, "timestamp"))
            elif kind == "id":
                chunks.append(_wire_bytes(signed_id, spec.id_header))
            elif kind == "url":
                chunks.append(_wire_bytes(url, "URL"))
            else:
                chunks.append(_wire_bytes(_single_header(headers, arg), arg))
        out.append(b"".join(chunks))
    return tuple(out)


def match_secret(spec: SignatureSpec, payloads: tuple[bytes, ...], signatures: list[bytes]) -> int:
    """The index of the first secret whose MAC equals one of ``signatures``, else -1."""
    digest = DIGESTS[spec.algorithm]
    for index, secret in enumerate(spec.secrets):
        key = secret.reveal()
        for payload in payloads:
            mac = hmac.new(key, payload, digest).digest()
            for sig in signatures:
                if hmac.compare_digest(mac, sig):
                    return index
    return -1


def _wire_bytes(text: str, what: str) -> bytes:
    """The bytes the sender put on the wire: aiohttp decodes header bytes that are not UTF-8 as
    lone surrogates (``surrogateescape``), which turns them back; anything else cannot have been
    signed by anyone and is refused, never a 500."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise Rejection("invalid_signature", f"the {what} is not valid text") from None


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
