"""Named canonicalizers: signed payloads that YAML templates cannot express.

A canonicalizer turns the raw body into the bytes a provider actually signed. It returns every
form the provider is documented to produce (each is a function of the same parsed data, so trying
them all accepts nothing the provider did not sign). It raises ``ValueError`` when the body cannot
be canonicalized (not UTF-8, not JSON), which the verifier answers with ``invalid_json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Canonicalizer = Callable[[bytes], tuple[bytes, ...]]


def sorted_json(body: bytes) -> tuple[bytes, ...]:
    """NOWPayments IPN: HMAC-SHA512 over the payload re-serialized with keys sorted.

    https://documenter.getpostman.com/view/7907941/2s93JusNJt (Instant Payments Notifications):
    "Sort all the parameters in alphabetical order" and ``JSON.stringify(params,
    Object.keys(params).sort())`` in Node. We reproduce JavaScript's serialization exactly:
    compact separators, non-ASCII left as is, and numbers written as JavaScript writes them
    (``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``, integers past 2**53 rounded to a double), because
    the sender parsed the data into JavaScript numbers before signing. Two forms are produced:

    1. keys sorted at every level (what "sort all the parameters" means, and what their PHP
       example's recursive ksort produces);
    2. the Node example taken literally: a replacer array of the sorted top-level keys, which
       ``JSON.stringify`` applies at every depth (nested keys not among them are dropped).
    """
    data = json.loads(body.decode("utf-8"))
    full = _js_dumps(_sort(data)).encode()
    if not isinstance(data, dict):
        return (full,)
    keys = sorted(data)
    literal = _js_dumps(_replacer(data, keys)).encode()
    return (full,) if literal == full else (full, literal)


def _sort(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sort(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sort(v) for v in value]
    return value


def _replacer(value: Any, keys: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _replacer(value[k], keys) for k in keys if k in value}
    if isinstance(value, list):
        return [_replacer(v, keys) for v in value]
    return value


def _js_dumps(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(_js_string(k) + ":" + _js_dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_js_dumps(v) for v in value) + "]"
    if isinstance(value, str):
        return _js_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value) if abs(value) < 2**53 else js_number(float(value))
    return js_number(value)


def _js_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def js_number(x: float) -> str:
    """ECMAScript ``Number::toString`` for a finite double (JSON.stringify writes NaN as null)."""
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(x))).as_tuple()[1:]
    digits = "".join(map(str, digits_tuple)).rstrip("0") or "0"
    k = len(digits)
    n = len("".join(map(str, digits_tuple))) + int(exponent)  # value = 0.digits * 10**n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + out


REGISTRY: dict[str, Canonicalizer] = {
    "sorted_json": sorted_json,
}
