"""Public keys and certificates from config: PEM, hex, base64 (raw or DER) or ``whpk_`` base64.

Each entry of a provider's ``public_keys`` (and its ``certificate``) is a literal, ``${ENV}``
(interpolated by the loader) or ``file:/path``, like a secret; it is parsed once, at load, into a
``cryptography`` key of the type the signature algorithm needs.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from gateway.providers.spec import PublicKey
from gateway.reader import Reader

_HEX_RE = re.compile(rb"[0-9a-fA-F]{64}")
MIN_RSA_BITS = 2048


def read_public_keys(r: Reader, algorithm: str) -> tuple[PublicKey, ...]:
    """``r`` is the list of ``public_keys`` (or None)."""
    if r.value is not None and not isinstance(r.value, list):
        r.fail("must be a list of keys (PEM, hex, base64, ${ENV_VAR} or file:/path)")
    return tuple(read_public_key(item, algorithm) for item in r.elements())


def read_public_key(r: Reader, algorithm: str) -> PublicKey:
    raw, label = _source(r)
    try:
        key = parse_public_key(raw, algorithm)
    except ValueError as exc:
        r.fail(f"is not a usable {algorithm} public key ({exc}) in {label}")
    return PublicKey(algorithm, key, label)


def _source(r: Reader) -> tuple[bytes, str]:
    value = r.value
    if not isinstance(value, str) or not value.strip():
        r.fail("must be a non-empty string (PEM, hex, base64, ${ENV_VAR} or file:/path)", value)
    if value.startswith("file:"):
        path = value[len("file:") :]
        try:
            return Path(path).read_bytes().strip(), value
        except OSError as exc:
            r.fail(f"cannot read key file: {exc.strerror}", path)
    return value.strip().encode(), f"#{r.path.rsplit('[', 1)[-1].rstrip(']')}" if "[" in r.path else r.path


def parse_public_key(raw: bytes, algorithm: str) -> Any:
    """A key object of the algorithm's type, or ValueError saying why not."""
    return check_key(_load(raw, algorithm), algorithm)


def _load(raw: bytes, algorithm: str) -> Any:
    if raw.startswith(b"-----BEGIN CERTIFICATE-----"):
        return x509.load_pem_x509_certificate(raw).public_key()
    if raw.startswith(b"-----BEGIN"):
        return load_pem_public_key(raw)
    if raw.startswith(b"whpk_"):  # Standard Webhooks: base64 of the raw Ed25519 key
        raw = raw[len(b"whpk_") :]
    elif algorithm == "ed25519" and _HEX_RE.fullmatch(raw):  # Discord: hex of the raw key
        return ed25519.Ed25519PublicKey.from_public_bytes(binascii.unhexlify(raw))
    try:
        der = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not PEM, hex or base64") from None
    if algorithm == "ed25519" and len(der) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(der)
    try:
        return load_der_public_key(der)  # SendGrid: base64 of the DER SubjectPublicKeyInfo
    except ValueError:
        return x509.load_der_x509_certificate(der).public_key()


def check_key(key: Any, algorithm: str) -> Any:
    if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if algorithm == "ecdsa-p256-sha256" and isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"an ECDSA key on {key.curve.name}, not P-256")
        return key
    if algorithm == "rsa-sha256" and isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits are needed")
        return key
    raise ValueError(f"a {type(key).__name__.removeprefix('_')} where {algorithm} needs another kind")
