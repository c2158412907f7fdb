"""NOWPayments: the body canonicalizer ``sorted_json`` (the rest of its scheme is the YAML template).

A canonicalizer turns the raw body into the bytes a provider actually signed. It returns every
form the provider is documented to produce (each is a function of the same parsed data, so trying
them all accepts nothing the provider did not sign), the preferred one first (the signer uses it).
It raises ``ValueError`` when the body cannot be canonicalized (not UTF-8, not JSON, nested too
deep), which the verifier answers with ``invalid_json``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any, NoReturn

_INDEX_RE = re.compile(r"0|[1-9][0-9]*")
_LONE_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


def sorted_json(body: bytes) -> tuple[bytes, ...]:
    """NOWPayments IPN: HMAC-SHA512 over the payload re-serialized by Node with keys sorted.

    https://documenter.getpostman.com/view/7907941/2s93JusNJt (Instant Payments Notifications):
    "Sort all the parameters in alphabetical order", with two Node examples over the parsed body,
    ``params``. The sender is JavaScript, so we reproduce ``JSON.parse`` then ``JSON.stringify``
    exactly: compact separators, non-ASCII written as is (lone surrogates as ``\\udXXX``), keys
    sorted by UTF-16 code units (``Array.prototype.sort``), integer-like keys first in numeric
    order (a JavaScript object's own key order), and numbers as ``Number::toString`` writes the
    double they parse to: ``25.50`` -> ``25.5``, ``1.0`` -> ``1``, ``1e-7`` -> ``1e-7``,
    ``0.000001`` -> ``0.000001``, ``1e21`` -> ``1e+21``, integers past 2**53 rounded to a double
    (``12345678901234567890`` -> ``12345678901234567000``), overflow -> ``null``. The forms:

    1. ``JSON.stringify(sortObject(params))``, the current docs' example: keys sorted at every
       depth; an array becomes an object keyed "0", "1", ... (``typeof [] === "object"``);
    2. keys sorted at every depth with arrays kept as arrays (what "sort all the parameters"
       means in the docs' PHP example and most ports);

    Not accepted, on purpose: the older example ``JSON.stringify(params,
    Object.keys(params).sort())``. Its replacer array applies at every depth, so nested keys that
    are not also top-level keys are dropped from the signed bytes: accepting that form would let
    anyone alter such nested fields (``fee.currency``, say) under a valid signature. The current
    docs sign the whole object (form 1); fail closed on the rest.

    Only a JSON object is accepted: NOWPayments always sends one.
    """
    try:
        data = json.loads(body.decode("utf-8"), parse_int=_js_int, parse_constant=_no_constant)
        if not isinstance(data, dict):
            raise ValueError("NOWPayments signs a JSON object")
        forms = (_js_dumps(_sort_object(data)), _js_dumps(_deep_sort(data)))
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    return tuple(dict.fromkeys(form.encode() for form in forms))


def _js_int(text: str) -> int | float:
    # JSON.parse reads every number as a double; below 2**53 an int prints the same and exactly.
    return int(text) if len(text) < 16 else float(text)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN and Infinity; JSON.parse does not


def _utf16(key: str) -> bytes:
    """Sort key of JavaScript's default sort: UTF-16 code units, not code points."""
    return key.encode("utf-16-be", "surrogatepass")


def _js_order(sorted_keys: list[str]) -> list[str]:
    """A JavaScript object's own key order: array-index keys ascending, then insertion order."""
    indexes = [k for k in sorted_keys if _INDEX_RE.fullmatch(k) and int(k) < 2**32 - 1]
    if not indexes:
        return sorted_keys
    taken = set(indexes)
    return sorted(indexes, key=int) + [k for k in sorted_keys if k not in taken]


def _sort_object(value: dict[str, Any] | list[Any]) -> dict[str, Any]:
    if isinstance(value, list):
        value = {str(i): v for i, v in enumerate(value)}
    out = {}
    for key in _js_order(sorted(value, key=_utf16)):
        item = value[key]
        out[key] = _sort_object(item) if isinstance(item, dict | list) else item
    return out


def _deep_sort(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_sort(value[k]) for k in _js_order(sorted(value, key=_utf16))}
    if isinstance(value, list):
        return [_deep_sort(v) for v in value]
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
        return str(value)  # |value| < 10**15: exact as a double, printed alike
    return js_number(value)


def _js_string(text: str) -> str:
    # json.dumps escapes exactly what JSON.stringify escapes (", \\, control characters as \b \f
    # \n \r \t or lowercase \u00XX); it leaves a lone surrogate raw where JavaScript escapes it.
    out = json.dumps(text, ensure_ascii=False)
    return _LONE_SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


def js_number(x: float) -> str:
    """ECMAScript ``Number::toString`` for a double (JSON.stringify writes NaN and ±Infinity as null).

    ``repr`` gives the shortest digits that round-trip, as ECMAScript requires; only the layout
    (plain, fixed or exponent notation) differs, and that is what this reproduces.
    """
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"  # also -0
    sign = "-" if x < 0 else ""
    digits_tuple, exponent = Decimal(repr(abs(x))).as_tuple()[1:]
    digits = "".join(map(str, digits_tuple)).rstrip("0") or "0"
    k = len(digits)
    n = len(digits_tuple) + int(exponent)  # value = 0.digits * 10**n
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
