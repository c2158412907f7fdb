"""Mollie next-gen webhooks: ``X-Mollie-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed
with the webhook subscription's signing secret; no timestamp.

No Python verifier exists (Mollie's is PHP: mollie-api-php ``SignatureValidator``): the oracle is
an independent implementation of "Next-gen webhooks: manual signature verification". Classic
Mollie webhooks (``id=tr_...`` form bodies) carry no signature and are refused by this preset.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from preset_contract import NOW, PresetContract, Scheme, make_provider, outcome

from gateway.providers.signer import sample_event

SECRET = "mollie-signing-secret-0ld"
ROTATED = "mollie-signing-secret-n3w"
PAYMENT = {
    "resource": "payment",
    "id": "tr_5B8cwPMGnU6qLbRvo7qEZo",
    "mode": "test",
    "amount": {"currency": "EUR", "value": "42.00"},
    "description": "Order #4200 — café",
    "status": "paid",
}
EVENT = {
    "resource": "event",
    "id": "event_GvJ8WHrp5isUdRub9CJyH",
    "type": "payment.paid",
    "entityId": "tr_5B8cwPMGnU6qLbRvo7qEZo",
    "createdAt": "2024-12-16T15:59:04.0Z",
    "_embedded": {"entity": PAYMENT},
    "_links": {"documentation": {"href": "https://docs.mollie.com/guides/webhooks", "type": "text/html"}},
}


def event(ts: int) -> bytes:
    return json.dumps(EVENT, ensure_ascii=False).encode()


def mollie_doc(secret: str, body: bytes, ts: int) -> dict[str, str]:
    return {"X-Mollie-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


SCHEME = Scheme(
    name="mollie",
    secrets=(SECRET, ROTATED),
    oracle=mollie_doc,
    event=event,
    signature_header="X-Mollie-Signature",
    repeatable=("X-Mollie-Signature",),  # during a rotation; see the xfail below
    expect_id="event_GvJ8WHrp5isUdRub9CJyH",
    expect_type="payment.paid",
    expect_payment={"id": "tr_5B8cwPMGnU6qLbRvo7qEZo", "status": "completed", "provider_status": "paid",
                    "amount": "42.00", "currency": "EUR"},
)  # fmt: skip


class TestContract(PresetContract):
    scheme = SCHEME


def test_classic_webhooks_are_refused(pv):
    """The classic ``webhookUrl`` call: a form with only the payment id, no signature at all."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    assert outcome(
        provider, {"Content-Type": "application/x-www-form-urlencoded"}, b"id=tr_5B8cwPMGnU6qLbRvo7qEZo"
    ) == ("missing_signature")


def test_classic_webhooks_only_with_an_explicit_unsigned_provider(pv):
    """What the catalog entry's comment tells users to configure: no preset, allow_unsigned."""
    classic = pv.provider("mollie-classic", [], allow_unsigned=True, body="form", event_id="id")
    assert classic.signature is None and classic.preset == ""
    assert outcome(classic, {}, b"id=tr_5B8cwPMGnU6qLbRvo7qEZo") == "accepted:-1"


def mollie_php_accepts(secrets: tuple[str, ...], body: bytes, headers: list[str]) -> bool:
    """mollie-api-php ``SignatureValidator::validatePayload``, line for line: each header value
    loses a leading ``sha256=`` only when it has one (``extractSignature``), then is compared
    (``hash_equals``, exact text) with the lowercase hex HMAC under each signing secret."""
    extracted = [h[len("sha256=") :] if h.startswith("sha256=") else h for h in headers]
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets]
    return any(hmac.compare_digest(e, x) for x in extracted for e in expected)


def test_a_signature_with_or_without_the_prefix_is_accepted_as_mollies_library_does(pv):
    """Mollie sends ``sha256=<hex>``; its own library strips the prefix only when present, so
    a bare hex signature verifies there too, and here."""
    provider = make_provider(pv, SCHEME, (SECRET,))
    body = event(NOW)
    signed = mollie_doc(SECRET, body, NOW)["X-Mollie-Signature"]
    bare = signed.removeprefix("sha256=")
    wrong = mollie_doc(ROTATED, body, NOW)["X-Mollie-Signature"]
    cases = [signed, bare, wrong, wrong.removeprefix("sha256="), bare.upper(), "sha256=" + signed,
             "SHA256=" + bare, "sha256= " + bare, "sha256=", bare[:-1]]  # fmt: skip
    for header in cases:
        expected = "accepted:0" if mollie_php_accepts((SECRET,), body, [header]) else "invalid_signature"
        got = outcome(provider, {"X-Mollie-Signature": header}, body)
        assert got == expected or (expected != "accepted:0" and got == "missing_signature"), header
    assert outcome(provider, {"X-Mollie-Signature": bare}, body) == "accepted:0"  # the oracle's positive control
    assert outcome(provider, pv.multi(("X-Mollie-Signature", wrong), ("X-Mollie-Signature", bare)), body) == (
        "accepted:0"
    )


async def test_payment_link_event_normalizes_from_its_type(make_gateway):
    """A payment link has no status field: its event type (payment-link.paid) says it. The
    catalog sample is such an event."""
    gateway = await make_gateway(providers={"mollie": {"secrets": [SECRET]}})
    body, extra = sample_event(gateway.settings.providers["mollie"])
    assert (await gateway.post("mollie", body, extra)).status == 200
    data = gateway.upstream.events[-1].event["data"]
    entity = json.loads(body)["_embedded"]["entity"]
    assert data["event_type"] == "payment-link.paid"
    assert data["payment"] == {"id": entity["id"], "status": "completed", "provider_status": "payment-link.paid",
                               "amount": "24.95", "currency": "EUR"}  # fmt: skip


def test_rotation_sends_the_header_twice(pv):
    provider = make_provider(pv, SCHEME, (SECRET,))
    body = event(NOW)
    old, new = mollie_doc(SECRET, body, NOW)["X-Mollie-Signature"], mollie_doc(ROTATED, body, NOW)["X-Mollie-Signature"]
    assert outcome(provider, pv.multi(("X-Mollie-Signature", new), ("X-Mollie-Signature", old)), body) == "accepted:0"
    assert outcome(provider, pv.multi(("X-Mollie-Signature", new), ("X-Mollie-Signature", new)), body) == (
        "invalid_signature"
    )
