"""Redaction of what the event store keeps: JSON paths from the provider's ``redact`` list.

Paths are dotted, with ``[n]`` or ``[*]`` for list items and ``*`` for any key:
``data.object.billing_details.email``, ``line_items[*].card``, ``customer.*``. Matched values
become ``"[REDACTED]"``. Credentials in headers are always masked in the stored copy, and so are
the headers matching ``events.redact_headers`` (credential-looking names, by default).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from typing import Any

import orjson

from gateway.escape import storable_headers

MASK = "[REDACTED]"
#: Never stored: credentials and signatures (a signature is a replayable credential in its window).
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
Path = tuple[str | int, ...]


def parse_redact_path(text: str) -> Path | None:
    parts: list[str | int] = []
    for piece in text.split("."):
        match = re.fullmatch(r"([^\[\]]+)((?:\[(?:\d+|\*)\])*)", piece)
        if not match:
            return None
        parts.append(match.group(1))
        parts.extend("*" if i == "*" else int(i) for i in re.findall(r"\[(\d+|\*)\]", match.group(2)))
    return tuple(parts)


def redact_document(doc: Any, paths: tuple[Path, ...]) -> Any:
    for path in paths:
        _apply(doc, path)
    return doc


def _apply(node: Any, path: Path) -> None:
    if not path:
        return
    step, rest = path[0], path[1:]
    if isinstance(node, dict):
        keys = list(node) if step == "*" else [step] if step in node else []
        for key in keys:
            if rest:
                _apply(node[key], rest)
            else:
                node[key] = MASK
    elif isinstance(node, list):
        indexes = range(len(node)) if step == "*" else [step] if isinstance(step, int) and step < len(node) else []
        for i in indexes:
            if rest:
                _apply(node[i], rest)
            else:
                node[i] = MASK


def redact_body(body: bytes, paths: tuple[Path, ...]) -> bytes:
    """The body with ``paths`` masked if it is JSON; unchanged when there are no rules or it is
    not JSON (a form, say); masked whole when it is nested too deep to read (see :func:`_parse`)."""
    if not paths:
        return body
    doc = _parse(body)
    if doc is _NOT_JSON:
        return body
    return _MASKED_WHOLE if doc is _TOO_DEEP else _dump(redact_document(doc, paths))


def redact_event(event: bytes, paths: tuple[Path, ...]) -> bytes:
    """The CloudEvents envelope with ``paths`` masked inside ``data.payload`` (masked whole when
    nested too deep to read)."""
    if not paths:
        return event
    doc = _parse(event)
    if not isinstance(doc, dict):
        return _MASKED_WHOLE if doc is _TOO_DEEP else event  # not an envelope: nothing to mask in
    payload = doc.get("data", {}).get("payload")
    if isinstance(payload, dict | list):
        redact_document(payload, paths)
    return _dump(doc)


_NOT_JSON, _TOO_DEEP = object(), object()
_MASKED_WHOLE = json.dumps(MASK).encode()


def _parse(data: bytes) -> Any:
    """JSON as the pipeline reads it (orjson), else as the stdlib reads it: a body kept as it came
    (``body: any``, or a form that also reads as JSON) may hold what orjson refuses, such as a lone
    surrogate escape. ``_NOT_JSON`` when neither reads it; ``_TOO_DEEP`` when the stdlib runs out
    of recursion (nesting near 1,000): what cannot be read cannot be masked, so it is masked whole
    rather than stored with what the rules hide."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data)
    except ValueError:
        return _NOT_JSON
    except RecursionError:
        return _TOO_DEEP


def _dump(doc: Any) -> bytes:
    """Compact JSON in UTF-8; with ASCII escapes where a string is not valid Unicode (a lone
    surrogate), which UTF-8 cannot carry; masked whole when nested too deep to write."""
    try:
        try:
            return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        except UnicodeEncodeError:
            return json.dumps(doc, separators=(",", ":")).encode()
    except RecursionError:
        return _MASKED_WHOLE


def stored_headers(headers: Any, signature_header: str | None, patterns: tuple[str, ...]) -> dict[str, str]:
    """The headers as stored: escaped where PostgreSQL needs it, credentials masked, and so are the
    names matching ``patterns`` (``events.redact_headers``, lower-case shell patterns)."""
    out = storable_headers(headers.items())
    for name in _masked_of(signature_header or "", patterns, tuple(out)):
        out[name] = MASK
    return out


@functools.lru_cache(maxsize=256)  # a sender's requests carry the same header names each time
def _masked_of(signature_header: str, patterns: tuple[str, ...], names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``names`` are masked in the stored copy: credentials, the provider's signature
    header, and names matching ``patterns``."""
    masked = SENSITIVE_HEADERS | {signature_header.lower()}
    extra = header_patterns(patterns)
    return tuple([name for name in names if name.lower() in masked or extra.match(name.lower())])


@functools.lru_cache(maxsize=16)  # one entry per configured list: built once, not per request
def header_patterns(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for the shell patterns (``*-token``), matched against lower-cased names."""
    return re.compile("|".join(fnmatch.translate(p.lower()) for p in patterns) or r"(?!)")
