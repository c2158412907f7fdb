"""Amounts shaped as an attacker would shape them: normalization bounds what it converts and
leaves the field out (``amount: null``), never fails the request. The payload still carries the
provider's value byte for byte."""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline.normalize import _amount

HUGE = ("1e999999999", "-1e999999999", "0e999999999", "1e-999999999", "9" * 5000, "1" + "0" * 100)


@pytest.mark.parametrize("amount", HUGE)
async def test_a_signed_stripe_event_with_a_huge_exponent_amount_is_forwarded_without_it(gateway, kit, amount):
    doc = json.loads(kit.stripe_body(f"evt_huge_{len(amount)}_{amount[:3]}"))
    doc["data"]["object"].update(amount=amount, amount_received=amount)
    body = json.dumps(doc).encode()
    await gateway.deliver_ok("stripe", body)
    received = gateway.upstream.events[-1]
    assert received.event["data"]["payment"]["amount"] is None
    assert received.event["data"]["payment"]["id"] == "pi_3Nabc"
    assert received.raw.endswith(b'"payload":' + body + b"}}")


async def test_a_huge_integer_amount_is_left_out(gateway, kit):
    body = kit.stripe_body("evt_huge_int").replace(b":2000,", b":" + b"9" * 30 + b",")
    await gateway.deliver_ok("stripe", body)
    assert gateway.upstream.events[-1].event["data"]["payment"]["amount"] is None


@pytest.mark.parametrize("shadow", [False, True])
async def test_a_shopify_total_price_with_a_huge_exponent_is_forwarded(make_gateway, shadow):
    gateway = await make_gateway(providers={"shopify": {"shadow": shadow}})
    body = b'{"id":820982911946154508,"financial_status":"paid","total_price":"1e99999999","currency":"EUR"}'
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Event-Id": f"ev-huge-{shadow}"}
    data = await gateway.expect(200, "shopify", body, headers, signed=not shadow)
    assert data["status"] == "forwarded"
    payment = gateway.upstream.events[-1].event["data"]["payment"]
    assert payment["amount"] is None and payment["status"] == "completed"
    assert gateway.upstream.events[-1].event["data"]["verified"] is (not shadow)


_PLAIN = re.compile(r"^-?\d+(\.\d+)?$")

amount_texts = st.one_of(
    st.from_regex(r"\A[ +-]?\d{0,60}(\.\d{0,60})?([eE][+-]?\d{1,12})?\Z"),
    st.sampled_from(["nan", "-Infinity", "inf", "sNaN", "1_000", " 12 ", "", "0x10", "١٢"]),
    st.text(max_size=40),
)
amount_values = st.one_of(amount_texts, st.integers(), st.floats(), st.booleans(), st.none())


@settings(max_examples=600, deadline=200)
@given(value=amount_values, unit=st.sampled_from(["major", "minor"]), currency=st.sampled_from(["USD", "JPY", "KWD"]))
def test_amount_normalization_is_bounded_for_any_shape(value, unit, currency):
    """Any value: None, or a short plain decimal string equal to the value (scaled for minor units)."""
    result = _amount(value, unit, currency)
    if result is None:
        return
    assert _PLAIN.match(result), result
    assert len(result) <= 120
    exponent = {"USD": 2, "JPY": 0, "KWD": 3}[currency] if unit == "minor" else 0
    with localcontext(prec=200):
        original = Decimal(repr(value) if isinstance(value, float) else str(value))
        assert Decimal(result) == original.scaleb(-exponent)


def _shapes(rng: random.Random, n: int) -> list[object]:
    """Amounts as a hostile sender would shape them: strings and raw JSON numbers."""
    digits = lambda k: "".join(rng.choice("0123456789") for _ in range(k))  # noqa: E731
    out: list[object] = []
    for _ in range(n):
        mantissa = rng.choice(["", "-", "+", " "]) + digits(rng.randrange(0, 40)) + rng.choice(["", "." + digits(8)])
        exponent = rng.choice(["", f"e{rng.randrange(-10**9, 10**9)}", f"E+{rng.randrange(10**6)}", "e", "e-"])
        text = mantissa + exponent
        number = rng.choice([rng.uniform(-1e300, 1e300), rng.randrange(-(10**40), 10**40)])
        out.append(rng.choice([text, text * rng.randrange(1, 4), number]))
    return out


async def test_signed_events_with_random_amount_shapes_are_all_forwarded(gateway, kit):
    """Through the whole pipeline: whatever the amount, the event is forwarded (never a 5xx or
    a 4xx for a correctly signed event), and the normalized amount is absent or exact."""
    rng = random.Random("amount-shapes")
    for n, value in enumerate(_shapes(rng, 120)):
        doc = json.loads(kit.stripe_body(f"evt_shape_{n}"))
        doc["data"]["object"].update(amount=value, amount_received=value)
        body = json.dumps(doc).encode()
        data = await gateway.expect(200, "stripe", body)
        assert data["status"] == "forwarded", (value, data)
        amount = gateway.upstream.events[-1].event["data"]["payment"]["amount"]
        if amount is not None:
            assert _PLAIN.match(amount) and len(amount) <= 120, (value, amount)
    assert len(gateway.upstream.events) == 120


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1" + b"0" * 400, b"0." + b"0" * 400 + b"1e-999"])
async def test_a_number_beyond_a_double_is_valid_json_and_forwarded(gateway, kit, number):
    """orjson refuses numbers beyond a double's range; they are valid JSON, so a signed event
    carrying one is forwarded (byte for byte) with the amount left out, not refused with 400."""
    body = kit.stripe_body(f"evt_double_{len(number)}_{number[:2].decode()}").replace(b":2000,", b":" + number + b",")
    await gateway.deliver_ok("stripe", body)
    received = gateway.upstream.events[-1]
    amount = received.event["data"]["payment"]["amount"]
    assert amount is None or Decimal(amount) == 0
    assert received.raw.endswith(b'"payload":' + body + b"}}")
