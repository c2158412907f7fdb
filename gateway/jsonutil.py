"""JSON on the hot path: orjson, strict, with a stdlib fallback for what orjson refuses to write.

orjson parses only strict RFC 8259 JSON from UTF-8 bytes (no NaN/Infinity, no BOM, no UTF-16
guessing, no lone surrogates, nesting bounded): exactly what a body we splice into the upstream's
event must be. It writes compact UTF-8; a string that is not valid Unicode (a header decoded with
surrogate escapes) falls back to the stdlib's ASCII escapes, which are still valid JSON.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes) -> Any:
    """Parse strict JSON; raises ``JSONDecodeError`` (a ``ValueError``) on anything else."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise
        return _loads_huge_numbers(data, exc)


def _loads_huge_numbers(data: bytes, error: orjson.JSONDecodeError) -> Any:
    """A number beyond a double's range (``1e400``) is valid JSON that orjson refuses: a signed
    event carrying one is still an event (its number reads as infinity, which normalization
    leaves out). The stdlib parses it; everything else stays as strict as orjson: UTF-8 only,
    no NaN/Infinity literals, and no lone surrogates (the result must encode as UTF-8)."""

    def refuse(name: str) -> Any:
        raise error

    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=refuse)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here, as in orjson
    except (UnicodeError, ValueError, RecursionError):
        raise error from None
    return doc


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError: e.g. a str holding a lone surrogate
        return json.dumps(obj, separators=(",", ":")).encode()


def follow(doc: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` (keys and list indexes) in parsed JSON, or None if any step is missing."""
    for step in path:
        if type(step) is str:  # a key (the usual step): one type check less than isinstance twice
            if not isinstance(doc, dict):
                return None
            doc = doc.get(step)
        elif isinstance(doc, list) and isinstance(step, int) and step < len(doc):
            doc = doc[step]
        else:
            return None
    return doc
