"""Stage 8: one CloudEvents 1.0 structured-mode event for the upstream (see docs/events.md).

The provider's JSON payload is spliced in byte for byte, not re-serialized: numbers, key order
and unicode reach the upstream exactly as the provider signed them, and it costs no encoding.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import re
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gateway import jsonutil
from gateway.pipeline.context import RequestContext
from gateway.pipeline.fields import document, lookup
from gateway.providers.spec import PaymentMap

# ISO 4217 currencies whose minor unit is not 1/100 (Stripe's list of zero- and three-decimal).
_ZERO_DECIMAL = ("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF")
_THREE_DECIMAL = ("BHD", "JOD", "KWD", "OMR", "TND")
_EXPONENT = {**dict.fromkeys((*_ZERO_DECIMAL, "XOF", "XPF"), 0), **dict.fromkeys(_THREE_DECIMAL, 3)}


class Normalize:
    name = "normalize"

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        doc = document(ctx)
        event_type = ctx.event_type or "event"
        data: dict[str, Any] = {
            "provider": provider.name,
            "event_type": ctx.event_type or None,
            "event_id": ctx.event_id,
            # False for an unsigned provider, and in shadow mode for a request that failed the check.
            "verified": ctx.secret_index >= 0,
            "payment": payment(ctx, provider.payment, doc) if provider.payment else None,
        }
        envelope = {
            "specversion": "1.0",
            "id": ctx.event_id,
            "source": provider.source,
            "type": f"{provider.name}.{event_type}",
            "time": _now_rfc3339(),
            "datacontenttype": "application/json",
            "data": data,
        }
        payload = _payload(ctx, doc)
        data["payload"] = orjson.Fragment(payload)  # spliced in as it is, by the one encoder call
        try:
            ctx.event = orjson.dumps(envelope)
        except TypeError:  # text orjson refuses (a lone surrogate): jsonutil's ASCII escapes instead
            del envelope["data"], data["payload"]
            ctx.event = b"".join((_open(envelope), b',"data":', _open(data), b',"payload":', payload, b"}}"))


def _open(obj: dict[str, Any]) -> bytes:
    """``{"a":1}`` -> ``{"a":1`` (the object left open for what follows)."""
    return jsonutil.dumps(obj)[:-1]


def _payload(ctx: RequestContext, doc: Any) -> bytes:
    assert ctx.provider is not None
    kind = ctx.provider.body
    from_json = kind == "json" or (kind == "any" and ctx.request.content_type != "application/x-www-form-urlencoded")
    if from_json and isinstance(doc, dict | list):
        return ctx.body  # parsed from these very bytes (strict UTF-8, no BOM): spliced as is
    if doc is not None:
        return jsonutil.dumps(doc)
    try:
        return json.dumps(ctx.body.decode("utf-8"), ensure_ascii=False).encode()
    except UnicodeDecodeError:
        return json.dumps({"base64": base64.b64encode(ctx.body).decode()}).encode()


def payment(ctx: RequestContext, spec: PaymentMap, doc: Any) -> dict[str, Any] | None:
    """The normalized payment fields, or None when this event carries no payment."""
    if spec.types and _types_rule(spec.types).match(ctx.event_type) is None:
        return None
    pid = lookup(ctx, spec.id)
    if pid is None or isinstance(pid, dict | list):
        return None
    raw_status = lookup(ctx, spec.status)
    currency = lookup(ctx, spec.currency)
    currency = currency.upper() if isinstance(currency, str) else None
    return {
        "id": str(pid),
        "status": spec.status_map.get(str(raw_status), "unknown") if raw_status is not None else None,
        "provider_status": raw_status,
        "amount": _amount(lookup(ctx, spec.amount), spec.amount_unit, currency),
        "currency": currency,
    }


@functools.lru_cache(maxsize=64)  # one per provider's list: compiled once, not per request
def _types_rule(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """The event types (``fnmatch`` patterns, case-sensitive) that carry a payment, as one regex."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


_second: list[Any] = [-1, ""]  # the last whole second formatted, reused within that second


def _now_rfc3339() -> str:
    """UTC now as ``2026-11-26T04:51:29.123Z`` (formatting the seconds once per second)."""
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


#: The amounts normalization converts: at most _MAX_DIGITS significant digits, below
#: 10**_MAX_DIGITS, with at most _MAX_SCALE decimal places. Beyond that the value is no money
#: amount, and a huge exponent ("1e999999999") would be written out digit by digit (a gigabyte).
#: 28 is the default Decimal precision: scaling a minor-unit amount stays exact.
_MAX_DIGITS = 28
_MAX_SCALE = 60


def _amount(value: Any, unit: str, currency: str | None) -> str | None:
    """A decimal string in major units (``"20.00"``), or None when absent, not a number, or out
    of bounds (the payload still carries the provider's value as sent)."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if unit == "minor" and type(value) is int and 0 <= value < 10**_MAX_DIGITS:  # the common case
        exponent = _EXPONENT.get(currency or "", 2)
        if not exponent:
            return str(value)
        units, cents = divmod(value, 10**exponent)
        return f"{units}.{cents:0{exponent}d}"
    amount = _decimal(value)
    if amount is None:
        return None
    if unit == "minor":
        amount = amount.scaleb(-_EXPONENT.get(currency or "", 2))
    return format(amount, "f")  # plain notation: never "1E+3"


def _decimal(value: Any) -> Decimal | None:
    """``value`` as a finite Decimal within the bounds above, else None. Text is length-checked
    before parsing; an int is checked before ``str()`` (which refuses over 4300 digits)."""
    if isinstance(value, int) and not -(10**_MAX_DIGITS) < value < 10**_MAX_DIGITS:
        return None
    text = repr(value) if isinstance(value, float) else str(value)
    if len(text) > 2 * _MAX_DIGITS:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    digits, exponent = amount.as_tuple()[1:]
    assert isinstance(exponent, int)  # finite
    if len(digits) > _MAX_DIGITS or exponent < -_MAX_SCALE or amount.adjusted() >= _MAX_DIGITS:
        return None
    return amount
