"""Shared by the tests of the public-key providers (Discord, SendGrid, PayPal, Standard Webhooks v1a).

The contract in ``preset_contract.py`` speaks of secrets; for these providers a "secret" is the
seed of the provider's private key (any string: the key is derived from its SHA-256, so the
contract's "wrong secret" is just another key), and the gateway is configured with the matching
public key. ``public_pv`` wraps the ``pv`` fixture so ``pv.provider(name, [seed, ...])`` configures
``public_keys`` instead of ``secrets``. The signatures are made with ``cryptography``, an
implementation independent of the gateway's verifier (which only ever verifies).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import types
from collections.abc import Callable
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from gateway.providers.signer import sample_event

PublicForm = Callable[[str], str]


def ed25519_key(seed: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def ed25519_public_raw(seed: str) -> bytes:
    return ed25519_key(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@cache
def ec_key(seed: str) -> ec.EllipticCurvePrivateKey:
    value = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big") % (2**255) + 1
    return ec.derive_private_key(value, ec.SECP256R1())


def ec_public_b64(seed: str) -> str:
    """As SendGrid shows the verification key: base64 of the DER SubjectPublicKeyInfo."""
    der = (
        ec_key(seed)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


_RSA: dict[str, rsa.RSAPrivateKey] = {}


def rsa_key(seed: str) -> rsa.RSAPrivateKey:
    """One 2048-bit key per seed (generated once per test session: RSA keys cannot be derived)."""
    if seed not in _RSA:
        _RSA[seed] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _RSA[seed]


def rsa_certificate_pem(seed: str, days: int = 365, start: float | None = None) -> str:
    """A self-signed certificate for the seed's key, shaped like PayPal's message verification cert."""
    key = rsa_key(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.com")])
    begin = datetime.datetime.fromtimestamp(time.time() if start is None else start, datetime.UTC) - datetime.timedelta(
        days=1
    )
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
        .not_valid_before(begin).not_valid_after(begin + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def rsa_sign(seed: str, message: bytes) -> bytes:
    return rsa_key(seed).sign(message, padding.PKCS1v15(), hashes.SHA256())


def public_pv(pv: Any, public: PublicForm, key: str = "public_keys", **fixed: Any) -> types.SimpleNamespace:
    """``pv`` whose ``provider(name, seeds)`` configures the seeds' public keys (and ``fixed``)."""
    base = pv.provider

    def provider(name: str, secrets: Any = None, **overrides: Any) -> Any:
        seeds = list(secrets or ())
        entry: dict[str, Any] = {**fixed, **overrides}
        if key == "public_keys":
            entry["public_keys"] = [public(s) for s in seeds]
        elif seeds:
            entry[key] = public(seeds[0])
        return base(name, [], **entry)

    return types.SimpleNamespace(**{**vars(pv), "provider": provider})


def sample_body(provider: Any) -> tuple[bytes, dict[str, str]]:
    body, extra = sample_event(provider)
    json.loads(body)
    return body, extra
