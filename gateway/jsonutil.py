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
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError: e.g. a str holding a lone surrogate
        return json.dumps(obj, separators=(",", ":")).encode()


def follow(doc: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` (keys and list indexes) in parsed JSON, or None if any step is missing."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return None
            doc = doc[step]
        elif isinstance(doc, dict):
            doc = doc.get(step)
        else:
            return None
    return doc
