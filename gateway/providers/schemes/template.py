"""The default scheme: the signature header described in YAML and the signed-payload template.

``signature.payload`` (``"{timestamp}.{body}"``, ``"{id}.{timestamp}.{body}"``, ``"{url}{body}"``,
``"{header:X-Name}"``...) is compiled once by ``readers.py`` (at load); ``render`` fills it in, for the
verifier and the signer alike. ``signature.canonicalizer`` names a body canonicalizer (below):
the ``{body}`` placeholder then stands for the body as the provider re-serialized it.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.errors import Rejection
from gateway.providers.request import Headers, getall, single_header, wire_bytes
from gateway.providers.schemes import nowpayments, paypal
from gateway.providers.schemes.base import (
    DIGESTS,
    Part,
    Read,
    Scheme,
    Signature,
    decode,
    encode,
    header_of,
)
from gateway.providers.spec import ProviderSpec, SignatureSpec

#: Body canonicalizers: the raw body -> every form the provider is documented to sign, the
#: preferred first (the signer uses it); ``ValueError`` when the body cannot be canonicalized.
CANONICALIZERS: dict[str, Callable[[bytes], tuple[bytes, ...]]] = {
    "sorted_json": nowpayments.sorted_json,
    "crc32": paypal.crc32,
}


def render(
    spec: SignatureSpec,
    body: bytes,
    timestamp: str,
    signed_id: str,
    url: str,
    headers: Headers,
    header: Callable[[Headers, str], str] = single_header,
) -> bytes:
    """The signed payload: ``spec.payload`` filled in; ``header(headers, name)`` reads a header."""
    chunks = []
    for kind, arg in spec.payload.parts:
        if kind == "lit":
            chunks.append(arg)
        elif kind == "body":
            chunks.append(body)
        elif kind == "timestamp":
            chunks.append(wire_bytes(timestamp, "timestamp"))
        elif kind == "id":
            chunks.append(wire_bytes(signed_id, spec.id_header))
        elif kind == "url":
            chunks.append(wire_bytes(url, "URL"))
        elif kind == "webhook_id":
            chunks.append(spec.webhook_id.encode())
        else:
            chunks.append(wire_bytes(header(headers, arg), arg))
    return b"".join(chunks)


def candidate_bodies(spec: SignatureSpec, body: bytes) -> tuple[bytes, ...]:
    """The body as the provider may have signed it: the raw bytes, or a canonicalizer's forms
    (the preferred first)."""
    if not spec.canonicalizer:
        return (body,)
    try:
        return CANONICALIZERS[spec.canonicalizer](body)
    except ValueError:
        raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None


class Template(Scheme):
    name = ""
    describe = "the signature.payload template"

    def read(self, provider: ProviderSpec, headers: Headers, body: bytes, url: str) -> Read:
        spec = provider.signature
        assert spec is not None
        if spec.repeated:
            signatures, timestamp = _parse_repeated(spec, headers)
        else:
            signatures, timestamp = _parse_header(spec, single_header(headers, spec.header))
        if provider.timestamp is not None and provider.timestamp.source == "header":
            timestamp = single_header(headers, provider.timestamp.header)
        bodies = candidate_bodies(spec, body) if spec.canonicalizer else (body,)
        payloads = bodies  # the common case: the bodies themselves are signed
        parts = spec.payload.parts
        if len(parts) != 1 or parts[0][0] != "body":
            signed_id = single_header(headers, spec.id_header) if spec.id_header else ""
            ts = timestamp or ""
            if len(bodies) == 1:  # no comprehension for the usual single body
                payloads = (render(spec, bodies[0], ts, signed_id, url, headers),)
            else:  # a canonicalizer's several forms
                payloads = tuple([render(spec, b, ts, signed_id, url, headers) for b in bodies])
        return (Part(tuple(signatures), payloads),), timestamp, bodies[0] if spec.canonicalizer else b""

    def sign_headers(
        self, provider: ProviderSpec, body: bytes, url: str, key: bytes, now: float, out: dict[str, str]
    ) -> None:
        spec = provider.signature
        assert spec is not None
        ts = format_timestamp(provider.timestamp.format if provider.timestamp else "unix", now)
        if provider.timestamp and provider.timestamp.source == "header":
            out[provider.timestamp.header] = ts
        if spec.id_header:
            out.setdefault(spec.id_header, f"msg_{uuid.uuid4().hex}")
        signed = CANONICALIZERS[spec.canonicalizer](body)[0] if spec.canonicalizer else body
        signed_id = out[spec.id_header] if spec.id_header else ""
        payload = render(spec, signed, ts, signed_id, url, out, header_of)
        sig = encode(spec.encoding, hmac.new(key, payload, DIGESTS[spec.algorithm]).digest())
        if spec.style == "plain":
            out[spec.header] = spec.prefix + sig
        else:
            items = [f"{spec.signature_keys[0]}{spec.kv_separator}{sig}"]
            if spec.timestamp_key:
                items.insert(0, f"{spec.timestamp_key}{spec.kv_separator}{ts}")
            out[spec.header] = spec.item_separator.join(items)


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
        sig = decode(spec.encoding, spec.algorithm, value)
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
            sig = decode(spec.encoding, algorithm, val)
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


def _parse_repeated(spec: SignatureSpec, headers: Headers) -> tuple[list[Signature], str | None]:
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


def format_timestamp(fmt: str, now: float) -> str:
    """``now`` written the way the verifier's ``timestamp.format`` reads it."""
    if fmt == "unix_ms":
        return str(int(now * 1000))
    if fmt == "iso8601":
        return datetime.fromtimestamp(int(now), UTC).isoformat().replace("+00:00", "Z")
    return str(int(now))
