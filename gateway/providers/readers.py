"""Readers for the provider keys whose value needs code: templates, JSON paths, networks, durations.

Each has the ``Parse`` shape of ``gateway.declare.fields``, ``(section, key, default) -> value``,
and is named in a key's declaration (``gateway/providers/entry.py``) with ``parse=``. Each fails
through the section's reader, so its errors name file, key and value like the generic ones.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from gateway.addresses import Network
from gateway.providers.handshakes import RESPONDERS
from gateway.providers.schemes import NAMES
from gateway.providers.spec import (
    CONFIG_PLACEHOLDERS,
    PLACEHOLDERS,
    Condition,
    FieldRef,
    HandshakeSpec,
    Template,
)
from gateway.reader import MISSING, Reader
from gateway.redact import parse_redact_path

DEFAULT_ROTATION_WARN = 7 * 24 * 3600.0
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_PATH_PIECE = re.compile(r"([^\[\]]+)((?:\[\d+\])*)")
HANDSHAKE_KEYS = ("name", "when", "reply", "responder")


def raw_value(r: Reader, key: str, default: Any) -> Any:
    """Any YAML value, unchecked (``sample``: an example body)."""
    return r.value.get(key, default) if isinstance(r.value, dict) else default


def raw_text(r: Reader, key: str, default: Any) -> str:
    """Like ``r.text`` but may be a single space or empty (separators, prefixes), which YAML users quote."""
    value = raw_value(r, key, default)
    if not isinstance(value, str):
        r.fail("must be a string", value, key)
    return value


def template(r: Reader, key: str, default: Any) -> Template:
    """``signature.payload``: the signed bytes, compiled once (``{body}``, ``{header:Name}``...)."""
    return compile_template(r, r.text(key, default))


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


def canonicalizer(r: Reader, key: str, default: Any) -> str:
    name: str = r.text(key, default)
    if name and name not in NAMES:
        r.fail(f"unknown canonicalizer; known: {', '.join(sorted(NAMES))}", name, key)
    return name


def hosts(r: Reader, key: str, default: Any) -> tuple[str, ...]:
    found: tuple[str, ...] = r.strings(key, default)
    for host in found:
        if not re.fullmatch(r"[a-z0-9.-]+", host):
            r.fail("must be lowercase host names (exact match, no scheme or port)", host, key)
    return found


def json_path(r: Reader, key: str, default: Any) -> tuple[str | int, ...]:
    return parse_path(r.sub(key), r.text(key, default)) if r.has(key) else default


def parse_path(r: Reader, text: str) -> tuple[str | int, ...]:
    """``data.object.id`` or ``items[0].id``."""
    parts: list[str | int] = []
    for piece in text.split("."):
        match = _PATH_PIECE.fullmatch(piece)
        if not match:
            r.fail("is not a path like data.items[0].id", text)
        parts.append(match.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    return tuple(parts)


def refs(r: Reader, key: str, default: Any) -> tuple[FieldRef, ...]:
    """``[{header: X}, {json: data.id}]`` or a single one, or a bare string meaning a JSON path;
    no default: at least one is required."""
    found = parse_refs(r.sub(key))
    if not found and default is MISSING:
        r.fail("is required", key=key)
    return found


def parse_refs(r: Reader) -> tuple[FieldRef, ...]:
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


def status_map(r: Reader, key: str, default: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in r.sub(key).mapping().items()}


def redact(r: Reader, key: str, default: Any) -> tuple[tuple[str | int, ...], ...]:
    paths = []
    for text in r.strings(key, default):
        path = parse_redact_path(text)
        if path is None:
            r.fail("is not a path like data.items[*].card", text, key)
        paths.append(path)
    return tuple(paths)


def networks(r: Reader, key: str, default: Any) -> tuple[Network, ...]:
    return parse_networks(r.sub(key))


def parse_networks(r: Reader) -> tuple[Network, ...]:
    found = []
    for item in r.elements():
        try:
            found.append(ipaddress.ip_network(str(item.value), strict=False))
        except ValueError:
            item.fail("is not an IP address or CIDR network", item.value)
    return tuple(found)


def duration(r: Reader, key: str, default: Any) -> float:
    """Seconds, or ``90s``, ``30m``, ``12h``, ``7d``, ``2w``."""
    value = r.value.get(key) if isinstance(r.value, dict) else None
    if value is None:
        return float(DEFAULT_ROTATION_WARN if default is None else default)
    match = _DURATION_RE.match(str(value).strip()) if not isinstance(value, bool) else None
    if match is None or float(match.group(1)) <= 0:
        r.fail("must be a duration like 3600, 90m, 12h or 7d", value, key)
    return float(match.group(1)) * _UNITS[match.group(2)]


def handshakes(r: Reader, key: str, default: Any) -> tuple[HandshakeSpec, ...]:
    """``handshake``: one mapping or a list; each ``{name, when, reply | responder}``.
    Whether a ``responder`` has a secret to sign with is checked with the signature (parse.py)."""
    sub = r.sub(key)
    if sub.value is None:
        return ()
    return tuple(_handshake(item) for item in handshake_items(sub))


def handshake_items(r: Reader) -> list[Reader]:
    return [r] if isinstance(r.value, dict) else list(r.elements())


def _handshake(r: Reader) -> HandshakeSpec:
    r.mapping(HANDSHAKE_KEYS)
    when = r.sub("when")
    conditions = [when] if isinstance(when.value, dict) else list(when.elements())
    if not conditions:
        r.fail("is required: the conditions that make a request this handshake", key="when")
    responder = r.text("responder", "")
    if responder and responder not in RESPONDERS:
        r.fail(f"unknown responder; known: {', '.join(sorted(RESPONDERS))}", responder, "responder")
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
