"""Sign a body as a provider would: the inverse of the verifier, for `sign`, `send` and tests.

Each scheme signs for itself (``schemes/``): the YAML template writes the signature header,
Twilio signs the URL and form, Adyen and Mailgun sign inside the body (``sign_body``).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from gateway.providers.schemes import scheme_of
from gateway.providers.schemes.base import header_of
from gateway.providers.spec import ASYMMETRIC, ProviderSpec


def sign(
    provider: ProviderSpec,
    body: bytes,
    url: str,
    now: float | None = None,
    secret_index: int = 0,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers (signature, timestamp, id) a real delivery of ``body`` would carry."""
    out = dict(headers or {})
    out.setdefault("Content-Type", "application/json")
    spec = provider.signature
    if spec is None:
        return out
    if spec.algorithm in ASYMMETRIC:
        raise ValueError(
            f"{provider.name} signs with its private key ({spec.algorithm}); the gateway has only the public key"
        )
    key = spec.secrets[secret_index].reveal()
    if spec.algorithm == "token":
        out[spec.header] = key.decode("utf-8", "surrogateescape")
        return out
    scheme_of(spec).sign_headers(provider, body, url, key, time.time() if now is None else now, out)
    return out


def sign_body(provider: ProviderSpec, body: bytes, now: float | None = None, secret_index: int = 0) -> bytes:
    """The body with its signature inside, for schemes that sign there (Adyen, Mailgun); else as is."""
    spec = provider.signature
    if spec is None or spec.algorithm in ASYMMETRIC or spec.algorithm == "token" or not spec.secrets:
        return body
    key = spec.secrets[secret_index].reveal()
    return scheme_of(spec).sign_body(spec, body, key, time.time() if now is None else now)


def sample_event(provider: ProviderSpec) -> tuple[bytes, dict[str, str]]:
    """A fresh example delivery from the catalog's ``sample``: body bytes and extra headers.

    ``{{random}}``, ``{{random_int}}``, ``{{uuid}}``, ``{{now}}`` and ``{{now_ms}}`` are filled anew each time, so
    every sample is a new event (dedup would otherwise answer ``duplicate``).
    """
    sample: Any = provider.sample
    if sample is None:
        sample = {"id": "{{uuid}}", "type": "test.event", "created": "{{now}}"}
    headers: dict[str, str] = {}
    if isinstance(sample, dict) and set(sample) <= {"headers", "body"} and "body" in sample:
        headers = {k: str(_fill(v)) for k, v in (sample.get("headers") or {}).items()}
        sample = sample["body"]
    if _content_type(headers).startswith("application/x-www-form-urlencoded"):
        return urlencode({k: str(v) for k, v in _fill(sample).items()}).encode(), headers
    body = json.dumps(_fill(sample), separators=(",", ":")).encode()
    return body, headers


def _content_type(headers: dict[str, str]) -> str:
    try:
        return header_of(headers, "Content-Type")
    except KeyError:
        return ""


def _fill(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v) for v in value]
    if value == "{{random_int}}":
        return random.randint(10**9, 10**10)
    if value == "{{now}}":
        return int(time.time())
    if value == "{{now_ms}}":
        return int(time.time() * 1000)
    if isinstance(value, str):
        return value.replace("{{random}}", os.urandom(6).hex()).replace("{{uuid}}", str(uuid.uuid4()))
    return value
