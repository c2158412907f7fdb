"""Sign a body as a provider would: the inverse of the verifier, for `sign`, `send` and tests."""

from __future__ import annotations

import base64
import hmac
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.providers import canonical
from gateway.providers.spec import ProviderSpec
from gateway.providers.verifier import DIGESTS


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
    ts = _timestamp(provider.timestamp.format if provider.timestamp else "unix", time.time() if now is None else now)
    if provider.timestamp and provider.timestamp.source == "header":
        out[provider.timestamp.header] = ts
    if spec.id_header:
        out.setdefault(spec.id_header, f"msg_{uuid.uuid4().hex}")
    signed = canonical.REGISTRY[spec.canonicalizer](body)[0] if spec.canonicalizer else body
    chunks = []
    for kind, arg in spec.payload.parts:
        chunks.append(
            arg if kind == "lit" else signed if kind == "body" else ts.encode() if kind == "timestamp"
            else out[spec.id_header].encode() if kind == "id" else url.encode() if kind == "url"
            else _header(out, arg).encode()
        )  # fmt: skip
    mac = hmac.new(spec.secrets[secret_index].reveal(), b"".join(chunks), DIGESTS[spec.algorithm]).digest()
    sig = _encode(spec.encoding, mac)
    if spec.style == "plain":
        out[spec.header] = spec.prefix + sig
    else:
        items = [f"{spec.signature_keys[0]}{spec.kv_separator}{sig}"]
        if spec.timestamp_key:
            items.insert(0, f"{spec.timestamp_key}{spec.kv_separator}{ts}")
        out[spec.header] = spec.item_separator.join(items)
    return out


def _timestamp(fmt: str, now: float) -> str:
    """``now`` written the way the verifier's ``timestamp.format`` reads it."""
    if fmt == "unix_ms":
        return str(int(now * 1000))
    if fmt == "iso8601":
        return datetime.fromtimestamp(int(now), UTC).isoformat().replace("+00:00", "Z")
    return str(int(now))


def _header(headers: dict[str, str], name: str) -> str:
    """A header the signed payload names, looked up case-insensitively as HTTP does."""
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise KeyError(f"the signed payload needs the {name} header; pass it in headers")


def _encode(encoding: str, mac: bytes) -> str:
    if encoding == "hex":
        return mac.hex()
    if encoding == "base64":
        return base64.b64encode(mac).decode()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sample_event(provider: ProviderSpec) -> tuple[bytes, dict[str, str]]:
    """A fresh example delivery from the catalog's ``sample``: body bytes and extra headers.

    ``{{random}}``, ``{{random_int}}``, ``{{uuid}}`` and ``{{now}}`` are filled anew each time, so
    every sample is a new event (dedup would otherwise answer ``duplicate``).
    """
    sample: Any = provider.sample
    if sample is None:
        sample = {"id": "{{uuid}}", "type": "test.event", "created": "{{now}}"}
    headers: dict[str, str] = {}
    if isinstance(sample, dict) and set(sample) <= {"headers", "body"} and "body" in sample:
        headers = {k: str(_fill(v)) for k, v in (sample.get("headers") or {}).items()}
        sample = sample["body"]
    body = json.dumps(_fill(sample), separators=(",", ":")).encode()
    return body, headers


def _fill(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v) for v in value]
    if value == "{{random_int}}":
        return random.randint(10**9, 10**10)
    if value == "{{now}}":
        return int(time.time())
    if isinstance(value, str):
        return value.replace("{{random}}", os.urandom(6).hex()).replace("{{uuid}}", str(uuid.uuid4()))
    return value
