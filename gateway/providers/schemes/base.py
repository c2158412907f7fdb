"""What every signature scheme shares: the signature encodings, the digests, and the contract.

A scheme has two directions. ``read`` (verify) turns a request into the signatures it carries,
decoded, and the candidate bytes each may sign; the generic verifier then tries every key and
checks the timestamp. ``sign_body`` / ``sign_headers`` (sign) write what a real delivery would
carry, for ``webhook-gateway sign``/``send`` and the tests. The YAML template (``template.py``) is
the default scheme; a provider whose scheme YAML cannot express has a module of its own here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import Rejection
from gateway.providers.request import Headers, SignedRequest, single_header
from gateway.providers.spec import ProviderSpec, SignatureSpec

DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}
SIZES = {"hmac-sha1": 20, "hmac-sha256": 32, "hmac-sha512": 64}
#: Decoded signature lengths: Ed25519 is fixed, an ECDSA P-256 DER sequence 8 to 72 bytes, RSA
#: the modulus size (2048 to 8192 bits).
ASYMMETRIC_SIZES = {"ed25519": (64, 64), "ecdsa-p256-sha256": (8, 72), "rsa-sha256": (256, 1024)}
#: One decoded signature and the algorithm it is for.
Signature = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Part:
    """Decoded signatures and the payloads any of them may sign. Every part of a request must
    verify under the same key (Adyen signs each item of a batch)."""

    signatures: tuple[Signature, ...]
    payloads: tuple[bytes, ...]


#: What ``read`` returns: the parts, the signed timestamp as sent (if the scheme or a header
#: carries one), and the canonical body the provider signed (b"" unless a canonicalizer made one).
Read = tuple[tuple[Part, ...], str | None, bytes]


class Scheme:
    """Base of every scheme; ``describe`` is what docs show as the signed payload."""

    name = ""
    describe = ""
    #: the signature is in a header (named by signature.header), not in the body
    uses_header = True
    #: the scheme itself carries a signed timestamp (``timestamp.from: signature`` is allowed)
    carries_timestamp = False
    #: the signed bytes include the URL the request was sent to
    signs_url = False

    def read(self, provider: ProviderSpec, headers: Headers, body: bytes, url: str) -> Read:
        """The signatures, the payloads they may sign, the signed timestamp and canonical body;
        a 401 ``Rejection`` (or 400 ``invalid_json``) when the request cannot carry them."""
        raise NotImplementedError

    def sign_body(self, spec: SignatureSpec, body: bytes, key: bytes, now: float) -> bytes:
        """The body with its signature inside, for schemes that sign there; else as is."""
        return body

    def sign_headers(
        self, provider: ProviderSpec, body: bytes, url: str, key: bytes, now: float, out: dict[str, str]
    ) -> None:
        """Add the signature (and timestamp, id) headers a delivery of ``body`` would carry."""


def header_timestamp(provider: ProviderSpec, headers: Headers) -> str | None:
    """The timestamp from its own header, when the provider's ``timestamp.from`` is ``header``."""
    ts = provider.timestamp
    if ts is not None and ts.source == "header":
        return single_header(headers, ts.header)
    return None


def decode(encoding: str, algorithm: str, text: str) -> bytes | None:
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


def encode(encoding: str, mac: bytes) -> str:
    """The inverse of ``decode``: the one spelling the provider writes."""
    if encoding == "hex":
        return mac.hex()
    if encoding == "base64":
        return base64.b64encode(mac).decode()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


class BodyScheme(Scheme):
    """A scheme whose signatures come with ready payloads (Twilio, Adyen, Mailgun): ``parse``
    returns them undecoded, ``read`` decodes them for the verifier."""

    def parse(self, request: SignedRequest, header: str) -> tuple[tuple[Signed, ...], str | None]:
        """``(signed parts, signed timestamp)``; ``ValueError`` when the body is not the JSON it signs."""
        raise NotImplementedError

    def read(self, provider: ProviderSpec, headers: Headers, body: bytes, url: str) -> Read:
        spec = provider.signature
        assert spec is not None
        try:
            signed, timestamp = self.parse(SignedRequest(headers, body, url), spec.header)
        except ValueError:
            raise Rejection("invalid_json", "the body is not the JSON this provider signs") from None
        parts = []
        for part in signed:
            algorithm = part.algorithm or spec.algorithm
            sigs = (decode(spec.encoding, algorithm, text) for text in part.signatures)
            decoded = tuple((algorithm, sig) for sig in sigs if sig)
            if not decoded:
                raise Rejection("invalid_signature", f"the signature is not a {spec.encoding} {algorithm} signature")
            parts.append(Part(decoded, part.payloads))
        return tuple(parts), header_timestamp(provider, headers) or timestamp, b""


@dataclass(frozen=True, slots=True)
class Signed:
    """Signatures as sent (``read`` decodes them) and the payloads any of them may sign."""

    signatures: tuple[str, ...]
    payloads: tuple[bytes, ...]
    algorithm: str = ""  # overrides the spec's algorithm (Twilio's HMAC-SHA256 shared keys)


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, for schemes that sign inside it; ``ValueError`` otherwise."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def header_of(headers: Headers, name: str) -> str:
    """A header the signed payload names, looked up case-insensitively as HTTP does."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise KeyError(f"the signed payload needs the {name} header; pass it in headers")
