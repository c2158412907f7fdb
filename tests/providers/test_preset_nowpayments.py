"""NOWPayments IPN: ``x-nowpayments-sig`` is the hex HMAC-SHA512 of the body's JSON re-serialized
by Node with its keys sorted (https://documenter.getpostman.com/view/7907941/2s93JusNJt, section
"Instant Payments Notifications"). There is no official SDK: the oracles are the two Node snippets
of the docs, run as written when ``node`` is installed, and expected strings derived by hand from
the ECMAScript rules (checked against Node whenever it is available).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess

import pytest

from gateway.providers.schemes.nowpayments import sorted_json
from gateway.providers.signer import sign

SECRET = "np-ipn-secret-0ld"

#: The docs' Node code, verbatim in substance: ``sortObject`` (current docs) and the replacer
#: array (older docs). Reads [secret, body] pairs as JSON on stdin, answers the two strings and
#: their HMACs per body.
NODE_DOCS = r"""
const crypto = require('crypto');
function sortObject(obj) {
  return Object.keys(obj).sort().reduce(
    (result, key) => {
      result[key] = (obj[key] && typeof obj[key] === 'object') ? sortObject(obj[key]) : obj[key]
      return result
    },
    {}
  )
}
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = cases.map(([notificationsKey, body]) => {
  const params = JSON.parse(body);
  return [JSON.stringify(sortObject(params)), JSON.stringify(params, Object.keys(params).sort())].map((text) => {
    const hmac = crypto.createHmac('sha512', notificationsKey);
    hmac.update(text);
    return [text, hmac.digest('hex')];
  });
});
process.stdout.write(JSON.stringify(out));
"""

# (body as received, JSON.stringify(sortObject(params)), JSON.stringify(params, sorted top-level keys))
CASES = [
    pytest.param(
        '{"price_amount": 25.50, "pay_amount": 1.0, "actually_paid": 1e-7, "payment_id": 5077125051, "order_id": "o"}',
        '{"actually_paid":1e-7,"order_id":"o","pay_amount":1,"payment_id":5077125051,"price_amount":25.5}',
        None,
        id="floats-unsorted",
    ),
    pytest.param(
        '{"payment_status":"finished","fee":{"serviceFee":0.5,"currency":"btc","depositFee":0,"withdrawalFee":1.10},"payment_id":1}',
        '{"fee":{"currency":"btc","depositFee":0,"serviceFee":0.5,"withdrawalFee":1.1},"payment_id":1,"payment_status":"finished"}',
        '{"fee":{},"payment_id":1,"payment_status":"finished"}',
        id="nested-fee-object",
    ),
    pytest.param(
        '{"order_description":"Caf\\u00e9 \u2615 \U0001f600","z":"tab\\t nl\\n quote\\" back\\\\ slash\\/ ctl\\u0001"}',
        '{"order_description":"Café \u2615 \U0001f600","z":"tab\\t nl\\n quote\\" back\\\\ slash/ ctl\\u0001"}',
        None,
        id="unicode-and-escapes",
    ),
    pytest.param(
        '{"k":2.50e-3,"j":1.5e300,"i":100,"h":0.1,"g":12345678901234567890,"f":-0.0,"e":-0,'
        '"d":1e-7,"c":0.000001,"b":1e20,"a":1E21,"l":-25.50,"m":123456789.12345678}',
        '{"a":1e+21,"b":100000000000000000000,"c":0.000001,"d":1e-7,"e":0,"f":0,"g":12345678901234567000,'
        '"h":0.1,"i":100,"j":1.5e+300,"k":0.0025,"l":-25.5,"m":123456789.12345678}',
        None,
        id="number-formatting",
    ),
    pytest.param(
        '{"z":[],"items":[{"b":2,"a":1}, 3, "x", null]}',
        '{"items":{"0":{"a":1,"b":2},"1":3,"2":"x","3":null},"z":{}}',
        '{"items":[{},3,"x",null],"z":[]}',
        id="arrays",
    ),
    pytest.param(
        '{"b":1,"10":2,"9":3,"a":{"2":1,"10":2}}',
        '{"9":3,"10":2,"a":{"2":1,"10":2},"b":1}',
        '{"10":2,"9":3,"a":{"10":2},"b":1}',
        id="integer-like-keys",
    ),
    pytest.param(
        '{"\uff01":1,"\U0001f600":2,"\u00e9":3,"E":4}',
        '{"E":4,"\u00e9":3,"\U0001f600":2,"\uff01":1}',
        None,
        id="utf16-key-order",
    ),
    pytest.param(
        '{"order_description":null,"is_fixed_rate":false,"is_fee_paid_by_user":true,"lone":"\\ud800"}',
        '{"is_fee_paid_by_user":true,"is_fixed_rate":false,"lone":"\\ud800","order_description":null}',
        None,
        id="literals-and-lone-surrogate",
    ),
    pytest.param(
        '{"a":1e400,"b":-1e400,"c":5e-324}',
        '{"a":null,"b":null,"c":5e-324}',
        None,
        id="overflow-and-denormal",
    ),
]


def _hmac(text: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), text.encode("utf-8", "surrogatepass"), hashlib.sha512).hexdigest()


@pytest.mark.parametrize(("body", "sort_object", "replacer"), CASES)
def test_canonical_forms_as_javascript_writes_them(body, sort_object, replacer):
    """How numbers are handled: the sender parsed the IPN into JavaScript values before signing,
    so every number is an IEEE-754 double printed by ``Number::toString``, never the digits that
    were on the wire. We parse with Python (``float`` is the same double; integers of 16 digits
    or more are read as doubles too, as JSON.parse does) and print with ECMAScript's algorithm:
    shortest round-trip digits (``repr`` computes the same ones), plain notation for exponents
    -7 < e < 21, else ``d.ddde+N``/``e-N``. So 25.50 -> 25.5, 1.0 -> 1, 1e-7 -> 1e-7, 0.000001
    -> 0.000001, 1e20 -> 100000000000000000000, 1E21 -> 1e+21, -0 -> 0, 12345678901234567890 ->
    12345678901234567000, 1e400 -> null. NaN and Infinity are not JSON (JSON.parse refuses them).
    Strings: non-ASCII as is, control characters escaped as JSON.stringify does, lone surrogates as
    ``\\udXXX``; keys in UTF-16 code-unit order with integer-like keys first, as a JS object holds them.
    """
    forms = [f.decode("utf-8", "surrogatepass") for f in sorted_json(body.encode("utf-8", "surrogatepass"))]
    assert forms[0] == sort_object  # the signer's form: the current docs' example
    if replacer and replacer != sort_object:
        assert replacer not in forms  # it drops nested keys from the signed bytes: refused


@pytest.mark.parametrize(("body", "sort_object", "replacer"), CASES)
def test_signatures_over_each_documented_form_are_accepted(pv, body, sort_object, replacer):
    """The current docs' form is accepted. The old replacer-array form is refused where it differs:
    it leaves nested keys that are not top-level keys out of the signature, so a forger could
    change them (fail closed; see gateway/providers/schemes/nowpayments.py)."""
    provider = pv.provider("nowpayments", [SECRET])
    raw = body.encode("utf-8", "surrogatepass")
    assert pv.outcome(provider, {"x-nowpayments-sig": _hmac(sort_object)}, raw) == "accepted:0"
    if replacer and replacer != sort_object:
        assert pv.outcome(provider, {"x-nowpayments-sig": _hmac(replacer)}, raw) == "invalid_signature"


def test_the_docs_node_code_is_the_oracle(pv):
    """Run the docs' Node snippets over every case: their strings are our expectations, and
    their signatures are accepted."""
    bodies = [c.values[0] for c in CASES]
    proc = subprocess.run(
        ["node", "-e", NODE_DOCS], input=json.dumps([[SECRET, b] for b in bodies]), capture_output=True,
        text=True, encoding="utf-8", errors="surrogatepass", timeout=60, check=True,
    )  # fmt: skip
    provider = pv.provider("nowpayments", [SECRET])
    for case, ((sorted_text, sorted_sig), (replacer_text, replacer_sig)) in zip(
        CASES, json.loads(proc.stdout), strict=True
    ):
        body, sort_object, replacer = case.values
        assert sorted_text == sort_object, case.id
        assert replacer_text == (replacer or sort_object), case.id
        raw = body.encode("utf-8", "surrogatepass")
        assert pv.outcome(provider, {"x-nowpayments-sig": sorted_sig}, raw) == "accepted:0", case.id
        expected = "accepted:0" if replacer_text == sort_object else "invalid_signature"
        assert pv.outcome(provider, {"x-nowpayments-sig": replacer_sig}, raw) == expected, case.id


def test_same_data_in_another_layout_verifies(pv):
    """The signature covers the data, not the bytes: key order and whitespace do not matter."""
    provider = pv.provider("nowpayments", [SECRET])
    data = {"payment_id": 5077125051, "payment_status": "finished", "price_amount": 25.5, "fee": {"currency": "btc"}}
    sig = _hmac('{"fee":{"currency":"btc"},"payment_id":5077125051,"payment_status":"finished","price_amount":25.5}')
    for body in (json.dumps(data), json.dumps(data, indent=2), json.dumps(dict(reversed(data.items())))):
        assert pv.outcome(provider, {"x-nowpayments-sig": sig}, body.encode()) == "accepted:0"


@pytest.mark.parametrize(
    "tampered",
    [
        '{"fee":{"currency":"eth"},"payment_id":5077125051,"payment_status":"finished","price_amount":25.5}',
        '{"fee":{"currency":"btc","extra":1},"payment_id":5077125051,"payment_status":"finished","price_amount":25.5}',
        '{"fee":{"currency":"btc"},"payment_id":5077125051,"payment_status":"finished","price_amount":25.51}',
        '{"fee":{"currency":"btc"},"payment_id":"5077125051","payment_status":"finished","price_amount":25.5}',
        '{"fee":{"currency":"btc"},"payment_id":5077125051,"payment_status":"finished","price_amount":25.5,"x":1}',
        '{"fee":{"currency":"btc"},"payment_id":5077125051,"payment_status":"finished"}',
    ],
)
def test_changed_data_is_refused(pv, tampered):
    provider = pv.provider("nowpayments", [SECRET])
    sig = _hmac('{"fee":{"currency":"btc"},"payment_id":5077125051,"payment_status":"finished","price_amount":25.5}')
    assert pv.outcome(provider, {"x-nowpayments-sig": sig}, tampered.encode()) == "invalid_signature"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"a":1',
        b'{"a":1} trailing',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b"[1,2]",  # NOWPayments signs an object
        b"123",
        b'"text"',
        b"null",
        b'{"a":"\xff"}',
        b'\xef\xbb\xbf{"a":1}',  # a byte-order mark is not JSON
        b'{"a":"' + "\U0001f600".encode("utf-16-le") + b'"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_body_that_is_not_a_json_object_is_invalid_json(pv, body):
    provider = pv.provider("nowpayments", [SECRET])
    assert pv.outcome(provider, {"x-nowpayments-sig": "ab" * 64}, body) == "invalid_json"


def test_headers_are_checked_before_the_body(pv):
    provider = pv.provider("nowpayments", [SECRET])
    assert pv.outcome(provider, {}, b"not json") == "missing_signature"
    assert pv.outcome(provider, {"x-nowpayments-sig": "zz"}, b"not json") == "invalid_signature"


def test_our_signer_uses_the_sort_object_form(pv):
    provider = pv.provider("nowpayments", ["other", SECRET])
    body = b'{"payment_id":1,"fee":{"b":1,"a":2},"price_amount":25.50}'
    headers = sign(provider, body, pv.URL, secret_index=1)
    assert headers["x-nowpayments-sig"] == _hmac('{"fee":{"a":2,"b":1},"payment_id":1,"price_amount":25.5}')
    assert pv.outcome(provider, headers, body) == "accepted:1"


def test_uppercase_hex_is_refused(pv):
    """Node's ``digest('hex')`` is lowercase and the docs compare strings."""
    provider = pv.provider("nowpayments", [SECRET])
    body = b'{"payment_id":1}'
    assert pv.outcome(provider, {"x-nowpayments-sig": _hmac('{"payment_id":1}')}, body) == "accepted:0"
    assert pv.outcome(provider, {"x-nowpayments-sig": _hmac('{"payment_id":1}').upper()}, body) == "invalid_signature"
