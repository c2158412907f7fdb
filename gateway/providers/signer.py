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
from urllib.parse import urlencode

from gateway.providers.schemes import nowpayments as canonical
from gateway.providers.schemes.adyen import SCHEMES, Twilio, _adyen_text
from gateway.providers.spec import ASYMMETRIC, ProviderSpec
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
    if spec.algorithm in ASYMMETRIC:
        raise ValueError(
            f"{provider.name} signs with its private key ({spec.algorithm}); the gateway has only the public key"
        )
    if spec.algorithm == "token":
        out[spec.header] = spec.secrets[secret_index].reveal().decode("utf-8", "surrogateescape")
        return out
    if spec.canonicalizer in SCHEMES:
        return _sign_scheme(provider, body, url, secret_index, out)
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


def _sign_scheme(provider: ProviderSpec, body: bytes, url: str, index: int, out: dict[str, str]) -> dict[str, str]:
    """Twilio signs into a header; Adyen and Mailgun into the body (see ``sign_body``)."""
    spec = provider.signature
    assert spec is not None
    if spec.canonicalizer == "twilio":
        is_form = _header_or(out, "Content-Type", "").startswith("application/x-www-form-urlencoded")
        params = Twilio._params(body) if is_form else ""
        mac = hmac.new(spec.secrets[index].reveal(), (url + params).encode(), DIGESTS[spec.algorithm]).digest()
        out[spec.header] = _encode(spec.encoding, mac)
    return out


def sign_body(provider: ProviderSpec, body: bytes, now: float | None = None, secret_index: int = 0) -> bytes:
    """The body with its signature inside, for schemes that sign there (Adyen, Mailgun); else as is."""
    spec = provider.signature
    if spec is None or spec.canonicalizer not in ("adyen", "mailgun"):
        return body
    key = spec.secrets[secret_index].reveal()
    doc = json.loads(body)
    if spec.canonicalizer == "mailgun":
        block = doc.setdefault("signature", {})
        block["timestamp"] = str(int(time.time() if now is None else now))
        block.setdefault("token", os.urandom(25).hex())
        message = (block["timestamp"] + block["token"]).encode()
        block["signature"] = hmac.new(key, message, DIGESTS[spec.algorithm]).hexdigest()
    else:
        for entry in doc.get("notificationItems", []):
            item = entry["NotificationRequestItem"]
            amount = item.get("amount") or {}
            fields = [
                item.get(k) for k in ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")
            ]
            fields += [amount.get("value"), amount.get("currency"), item.get("eventCode"), item.get("success")]
            message = ":".join(_adyen_text(v)[0] for v in fields).encode()
            mac = hmac.new(key, message, DIGESTS[spec.algorithm]).digest()
            item.setdefault("additionalData", {})["hmacSignature"] = base64.b64encode(mac).decode()
    return json.dumps(doc, separators=(",", ":")).encode()


def _header_or(headers: dict[str, str], name: str, default: str) -> str:
    try:
        return _header(headers, name)
    except KeyError:
        return default


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
    if _header_or(headers, "Content-Type", "").startswith("application/x-www-form-urlencoded"):
        return urlencode({k: str(v) for k, v in _fill(sample).items()}).encode(), headers
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
    if value == "{{now_ms}}":
        return int(time.time() * 1000)
    if isinstance(value, str):
        return value.replace("{{random}}", os.urandom(6).hex()).replace("{{uuid}}", str(uuid.uuid4()))
    return value
