"""Turn one provider's YAML (catalog preset merged with the gateway's entry) into a ProviderSpec."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import replace
from typing import Any

from gateway.providers.handshakes import RESPONDERS
from gateway.providers.keys import read_public_key, read_public_keys
from gateway.providers.schemes import CANONICALIZERS, NAMES, SCHEMES
from gateway.providers.spec import (
    ASYMMETRIC,
    CONFIG_PLACEHOLDERS,
    PLACEHOLDERS,
    Condition,
    FieldRef,
    HandshakeSpec,
    Network,
    PaymentMap,
    ProviderSpec,
    PublicKey,
    RateLimit,
    SignatureSpec,
    Template,
    TimestampSpec,
)
from gateway.reader import Reader
from gateway.redact import parse_redact_path
from gateway.secrets import Secret

ALGORITHMS = ("hmac-sha1", "hmac-sha256", "hmac-sha512", "token", *ASYMMETRIC)
ENCODINGS = ("hex", "base64", "base64url")
SECRET_ENCODINGS = ("raw", "base64", "whsec", "hex")
BODY_KINDS = ("json", "form", "any")
PROVIDER_KEYS = (
    "preset", "display_name", "icon", "docs", "source", "body", "signature", "timestamp",
    "event_id", "event_type", "payment", "sample", "secrets", "allow_unsigned", "max_body_bytes",
    "ip_allowlist", "rate_limit", "dedup_ttl", "tested_with", "redact", "public_keys", "certificate",
    "webhook_id", "handshake", "shadow", "url_from_forwarded_headers", "rotation_warn_after",
    "min_secret_bytes", "dedup_signed_content",
)  # fmt: skip
SIGNATURE_KEYS = (
    "algorithm", "header", "encoding", "prefix", "style", "item_separator", "kv_separator",
    "signature_keys", "timestamp_key", "id_header", "payload", "canonicalizer", "secret_encoding",
    "public_key", "certificate_header", "certificate_hosts", "repeated", "prefix_optional",
)  # fmt: skip
HANDSHAKE_KEYS = ("name", "when", "reply", "responder")
DEFAULT_ROTATION_WARN = 7 * 24 * 3600.0
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


def parse_provider(name: str, r: Reader, secrets: tuple[Secret, ...], defaults: dict[str, Any]) -> ProviderSpec:
    """Build the spec; ``defaults`` holds gateway-wide limits (body size, rate limit, dedup ttl)."""
    r.mapping(PROVIDER_KEYS)
    allow_unsigned = r.boolean("allow_unsigned", False)
    signature = None
    if r.has("signature"):
        signature = parse_signature(r.sub("signature"), secrets, r)
    elif not allow_unsigned:
        r.fail("has no signature scheme; set allow_unsigned: true to accept unsigned webhooks", key="signature")
    timestamp = parse_timestamp(r.sub("timestamp"), signature) if r.has("timestamp") else None
    if signature and signature.payload.kinds & {"timestamp"} and timestamp is None:
        r.fail("the signed payload uses {timestamp} but no timestamp is configured", key="timestamp")
    rate = r.sub("rate_limit")
    spec = ProviderSpec(
        name=name,
        display_name=r.text("display_name", name),
        icon=r.text("icon", "🔔"),
        docs=r.text("docs", ""),
        preset=r.text("preset", ""),
        body=r.text("body", "json", BODY_KINDS),
        signature=signature,
        timestamp=timestamp,
        event_id=parse_refs(r.sub("event_id")),
        event_type=parse_refs(r.sub("event_type")),
        payment=parse_payment(r.sub("payment")) if r.has("payment") else None,
        max_body_bytes=r.integer("max_body_bytes", defaults["max_body_bytes"]),
        ip_allowlist=parse_networks(r.sub("ip_allowlist")),
        rate_limit=parse_rate(rate) if r.has("rate_limit") else defaults["rate_limit"],
        dedup_ttl=r.number("dedup_ttl", defaults["dedup_ttl"]),
        source=r.text("source", f"webhook-gateway/{name}"),
        sample=r.value.get("sample") if isinstance(r.value, dict) else None,
        redact=parse_redact(r),
        handshakes=parse_handshakes(r.sub("handshake"), signature),
        shadow=r.boolean("shadow", False),
        url_from_forwarded_headers=r.boolean(
            "url_from_forwarded_headers", defaults.get("url_from_forwarded_headers", False)
        ),
        rotation_warn_after=parse_duration(r, "rotation_warn_after", defaults.get("rotation_warn_after")),
        min_secret_bytes=r.integer("min_secret_bytes", 0, minimum=0),
    )
    if signature is None:
        return spec
    return replace(spec, dedup_signed_content=r.boolean("dedup_signed_content", spec.replayable_under_new_id()))


def parse_duration(r: Reader, key: str, default: Any) -> float:
    """Seconds, or ``90s``, ``30m``, ``12h``, ``7d``, ``2w``."""
    value = r.value.get(key) if isinstance(r.value, dict) else None
    if value is None:
        return float(DEFAULT_ROTATION_WARN if default is None else default)
    match = _DURATION_RE.match(str(value).strip()) if not isinstance(value, bool) else None
    if match is None or float(match.group(1)) <= 0:
        r.fail("must be a duration like 3600, 90m, 12h or 7d", value, key)
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_redact(r: Reader) -> tuple[tuple[str | int, ...], ...]:
    paths = []
    for text in r.strings("redact", ()):
        path = parse_redact_path(text)
        if path is None:
            r.fail("is not a path like data.items[*].card", text, "redact")
        paths.append(path)
    return tuple(paths)


def parse_signature(r: Reader, secrets: tuple[Secret, ...], provider: Reader) -> SignatureSpec:
    """``provider`` is the whole entry: its public_keys, certificate and webhook_id belong to the scheme."""
    r.mapping(SIGNATURE_KEYS)
    algorithm = r.text("algorithm", choices=ALGORITHMS)
    style = r.text("style", "plain", ("plain", "list"))
    keys = r.strings("signature_keys", ())
    if style == "list" and not keys:
        r.fail("is required when style is list", key="signature_keys")
    name = r.text("canonicalizer", "")
    if name and name not in NAMES:
        r.fail(f"unknown canonicalizer; known: {', '.join(sorted(NAMES))}", name, "canonicalizer")
    scheme = SCHEMES.get(name)
    header = r.text("header", "") if scheme and not scheme.uses_header else r.text("header")
    payload = compile_template(r, r.text("payload", "{body}"))
    id_header = r.text("id_header", "")
    if "id" in payload.kinds and not id_header:
        r.fail("the signed payload uses {id} but signature.id_header is not set", key="id_header")
    webhook_id = provider.text("webhook_id", "")
    if "webhook_id" in payload.kinds and not webhook_id:
        provider.fail("the signed payload uses {webhook_id}: set the webhook's id", key="webhook_id")
    encoding = r.text("secret_encoding", "raw", SECRET_ENCODINGS)
    public_algorithm, public_keys_names = _public_scheme(r, algorithm, style, keys)
    public_keys = _public_keys(provider, public_algorithm)
    certificate_header = r.text("certificate_header", "")
    if algorithm in ASYMMETRIC and secrets:
        provider.fail(f"{algorithm} verifies with public_keys, not secrets", key="secrets")
    if algorithm in ASYMMETRIC and not public_keys and not certificate_header:
        provider.fail(f"no public key configured for {algorithm} (add public_keys: [...])", key="public_keys")
    if algorithm not in ASYMMETRIC and not secrets and not public_keys:
        r.fail("no secrets configured for a signed provider (add secrets: [...])")
    return SignatureSpec(
        algorithm=algorithm,
        header=header,
        encoding=r.text("encoding", "hex", ENCODINGS),
        payload=payload,
        secrets=tuple(decode_secret(r, s, encoding, i) for i, s in enumerate(secrets)),
        style=style,
        prefix=_raw_text(r, "prefix"),
        prefix_optional=r.boolean("prefix_optional", False),
        item_separator=_raw_text(r, "item_separator", ","),
        kv_separator=_raw_text(r, "kv_separator", "="),
        signature_keys=keys,
        timestamp_key=r.text("timestamp_key", ""),
        id_header=id_header,
        canonicalizer=name if name in CANONICALIZERS else "",
        scheme=name if name in SCHEMES else "",
        public_keys=public_keys,
        public_algorithm=public_algorithm,
        public_signature_keys=public_keys_names,
        webhook_id=webhook_id,
        certificate_header=certificate_header,
        certificate_hosts=_hosts(r) if certificate_header else (),
        repeated=r.text("repeated", "refuse", ("refuse", "any")) == "any",
    )


def _public_scheme(r: Reader, algorithm: str, style: str, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The public-key algorithm and, in a list header, the item names its signatures go under."""
    if algorithm in ASYMMETRIC:
        if r.has("public_key"):
            r.fail(f"is only for a public-key scheme beside an HMAC one; {algorithm} is one already", key="public_key")
        return algorithm, keys
    if not r.has("public_key"):
        return "", ()
    sub = r.sub("public_key")
    sub.mapping(("algorithm", "signature_keys"))
    names = sub.strings("signature_keys", ())
    if style == "list" and not names:
        sub.fail("is required when style is list", key="signature_keys")
    return sub.text("algorithm", choices=ASYMMETRIC), names


def _public_keys(provider: Reader, algorithm: str) -> tuple[PublicKey, ...]:
    if not algorithm:
        for key in ("public_keys", "certificate"):
            if provider.has(key):
                provider.fail("this signature scheme has no public-key algorithm", key=key)
        return ()
    keys = read_public_keys(provider.sub("public_keys"), algorithm)
    if provider.has("certificate"):
        keys += (read_public_key(provider.sub("certificate"), algorithm),)
    return keys


def _hosts(r: Reader) -> tuple[str, ...]:
    hosts: tuple[str, ...] = r.strings("certificate_hosts", ())
    for host in hosts:
        if not re.fullmatch(r"[a-z0-9.-]+", host):
            r.fail("must be lowercase host names (exact match, no scheme or port)", host, "certificate_hosts")
    return hosts


def _raw_text(r: Reader, key: str, default: str = "") -> str:
    """Like ``r.text`` but a separator may be a single space, which YAML users quote."""
    value = r.value.get(key, default) if isinstance(r.value, dict) else default
    if not isinstance(value, str):
        r.fail("must be a string", value, key)
    return value


def compile_template(r: Reader, source: str) -> Template:
    parts: list[tuple[str, Any]] = []
    pos = 0
    for match in _PLACEHOLDER_RE.finditer(source):
        if match.start() > pos:
            parts.append(("lit", source[pos : match.start()].encode()))
        name = match.group(1)
        if name.startswith("header:") and len(name) > 7:
            parts.append(("header", name[7:]))
        elif name in PLACEHOLDERS or name in CONFIG_PLACEHOLDERS:
            parts.append((name, ""))
        else:
            known = "{body}, {timestamp}, {id}, {url}, {webhook_id} or {header:Name}"
            r.fail(f"unknown placeholder {{{name}}}; use {known}", source, "payload")
        pos = match.end()
    if pos < len(source):
        parts.append(("lit", source[pos:].encode()))
    return Template(source=source, parts=tuple(parts))


def decode_secret(r: Reader, secret: Secret, encoding: str, index: int) -> Secret:
    raw = secret.reveal()
    if encoding == "raw":
        return secret
    if encoding == "whsec" and raw.startswith(b"whsec_"):
        raw = raw[len(b"whsec_") :]
    try:
        key = binascii.unhexlify(raw.strip()) if encoding == "hex" else base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        # SECURITY: name the secret's source, never its value.
        what = "hex" if encoding == "hex" else "base64"
        message = f"secret #{index} ({secret.label}) is not valid {what} for secret_encoding {encoding}"
        r.fail(message, key="secret_encoding")
    if not key:
        r.fail(f"secret #{index} ({secret.label}) decodes to nothing", key="secret_encoding")
    return Secret(key, secret.label)


def parse_timestamp(r: Reader, signature: SignatureSpec | None) -> TimestampSpec:
    r.mapping(("from", "header", "path", "format", "tolerance"))
    source = r.text("from", "header", ("header", "signature", "json"))
    header = r.text("header") if source == "header" else ""
    path = parse_path(r, r.text("path")) if source == "json" else ()
    scheme = SCHEMES.get(signature.scheme) if signature else None
    if source == "signature" and not (signature and (signature.timestamp_key or (scheme and scheme.carries_timestamp))):
        r.fail("from: signature needs signature.timestamp_key", key="from")
    return TimestampSpec(
        source=source,
        header=header,
        format=r.text("format", "unix", ("unix", "unix_ms", "iso8601")),
        tolerance=float(r.number("tolerance", 300)),
        path=path,
    )


def parse_refs(r: Reader) -> tuple[FieldRef, ...]:
    """``[{header: X-Id}, {json: data.id}]`` or a single one, or a bare string meaning a JSON path."""
    if r.value is None:
        return ()
    items = r.value if isinstance(r.value, list) else [r.value]
    return tuple(_ref(Reader(r.file, item, r.path)) for item in items)


def _ref(r: Reader) -> FieldRef:
    if isinstance(r.value, str):
        return FieldRef(path=parse_path(r, r.value))
    r.mapping(("header", "json"))
    if r.has("header") == r.has("json"):
        r.fail("give exactly one of header or json", r.value)
    if r.has("header"):
        return FieldRef(header=r.text("header"))
    return FieldRef(path=parse_path(r, r.text("json")))


def parse_path(r: Reader, text: str) -> tuple[str | int, ...]:
    """``data.object.id`` or ``items[0].id``."""
    parts: list[str | int] = []
    for piece in text.split("."):
        match = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", piece)
        if not match:
            r.fail("is not a path like data.items[0].id", text)
        parts.append(match.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    return tuple(parts)


def parse_payment(r: Reader) -> PaymentMap:
    r.mapping(("types", "id", "status", "status_map", "amount", "amount_unit", "currency"))
    status_map = {str(k): str(v) for k, v in r.sub("status_map").mapping().items()}
    return PaymentMap(
        id=parse_refs(r.sub("id")) or r.fail("is required", key="id"),
        status=parse_refs(r.sub("status")),
        status_map=status_map,
        amount=parse_refs(r.sub("amount")),
        amount_unit=r.text("amount_unit", "major", ("major", "minor")),
        currency=parse_refs(r.sub("currency")),
        types=r.strings("types", ()),
    )


def parse_networks(r: Reader) -> tuple[Network, ...]:
    networks = []
    for item in r.elements():
        try:
            networks.append(ipaddress.ip_network(str(item.value), strict=False))
        except ValueError:
            item.fail("is not an IP address or CIDR network", item.value)
    return tuple(networks)


def parse_rate(r: Reader) -> RateLimit:
    r.mapping(("rate", "burst"))
    rate = float(r.number("rate"))
    return RateLimit(rate=rate, burst=r.integer("burst", max(1, int(rate))))


def parse_handshakes(r: Reader, signature: SignatureSpec | None) -> tuple[HandshakeSpec, ...]:
    """``handshake``: one mapping or a list; each ``{name, when, reply | responder}``."""
    if r.value is None:
        return ()
    items = [r] if isinstance(r.value, dict) else list(r.elements())
    return tuple(_handshake(item, signature) for item in items)


def _handshake(r: Reader, signature: SignatureSpec | None) -> HandshakeSpec:
    r.mapping(HANDSHAKE_KEYS)
    when = r.sub("when")
    conditions = [when] if isinstance(when.value, dict) else list(when.elements())
    if not conditions:
        r.fail("is required: the conditions that make a request this handshake", key="when")
    responder = r.text("responder", "")
    if responder and responder not in RESPONDERS:
        r.fail(f"unknown responder; known: {', '.join(sorted(RESPONDERS))}", responder, "responder")
    if responder and not (signature and signature.secrets):
        r.fail("this responder signs its answer with the provider's secret: configure secrets", key="responder")
    reply = r.sub("reply")
    reply.mapping(("json", "text", "status"))
    if reply.has("json") and reply.has("text"):
        reply.fail("give json or text, not both")
    if bool(responder) == r.has("reply"):
        r.fail("give exactly one of reply or responder")
    status = reply.integer("status", 200, minimum=200)
    if status > 299:
        reply.fail("must be a 2xx status", status, "status")
    return HandshakeSpec(
        name=r.text("name", "handshake"),
        when=tuple(_condition(c) for c in conditions),
        status=status,
        json=reply.value.get("json") if isinstance(reply.value, dict) else None,
        text=reply.text("text", None),
        responder=responder,
    )


def _condition(r: Reader) -> Condition:
    r.mapping(("header", "json", "equals", "absent"))
    ref = _ref(Reader(r.file, {k: v for k, v in r.mapping().items() if k in ("header", "json")}, r.path))
    absent = r.boolean("absent", False)
    if absent == ("equals" in r.mapping()):
        r.fail("give exactly one of equals or absent: true")
    return Condition(ref=ref, equals=r.value.get("equals"), absent=absent)
