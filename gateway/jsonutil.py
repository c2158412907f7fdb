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
