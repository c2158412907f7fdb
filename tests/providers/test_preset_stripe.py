"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">[,v1=..][,v0=..]``.

The oracle is the official ``stripe`` SDK: ``WebhookSignature.generate_signature_header`` signs,
``Webhook.construct_event`` verifies. Both directions are checked: what the SDK signs we accept,
and what we accept or sign the SDK accepts. Where we are stricter than the SDK it is on purpose
and tested below; none of these is a header Stripe sends:

- a timestamp more than the tolerance in the future (the SDK checks only the past);
- a second ``t`` item (the SDK silently takes the first);
- ``t=01700000000`` or ``t=+1700000000`` (the SDK runs ``int()`` and signs the re-formatted
  number; we verify the digits that were sent);
- ``v1=<sig>=junk`` (the SDK's ``split("=", 2)`` drops what follows a second ``=``).
"""

from __future__ import annotations

import json
import time

import pytest
import stripe

from gateway.providers.signer import sign

SECRET = "whsec_0ldStr1peSecret"
INTENT = {"id": "pi_1", "object": "payment_intent", "amount": 2000, "currency": "usd", "status": "succeeded"}
EVENT = json.dumps({
    "id": "evt_1PStripeTest", "object": "event", "type": "payment_intent.succeeded", "api_version": "2024-06-20",
    "data": {"object": INTENT},
}).encode()  # fmt: skip


def _hex(pv, body, ts, secret=SECRET):
    return pv.mac(secret.encode(), f"{ts}.".encode() + body).hex()


def _sdk_accepts(body: bytes, header: str, secret: str = SECRET) -> bool:
    try:
        stripe.Webhook.construct_event(body, header, secret)
    except stripe.SignatureVerificationError:
        return False
    return True


def test_sdk_signed_event_is_accepted(pv):
    header = stripe.WebhookSignature.generate_signature_header(EVENT.decode(), SECRET, timestamp=pv.NOW)
    assert pv.outcome(pv.provider("stripe", [SECRET]), {"Stripe-Signature": header}, EVENT) == "accepted:0"


def test_our_signer_is_accepted_by_the_sdk(pv):
    provider = pv.provider("stripe", [SECRET, "whsec_other"])
    headers = sign(provider, EVENT, pv.URL, now=time.time())
    event = stripe.Webhook.construct_event(EVENT, headers["Stripe-Signature"], SECRET)
    assert event.id == "evt_1PStripeTest"
    rotated = sign(provider, EVENT, pv.URL, now=time.time(), secret_index=1)
    assert _sdk_accepts(EVENT, rotated["Stripe-Signature"], "whsec_other")
    assert not _sdk_accepts(EVENT, rotated["Stripe-Signature"], SECRET)


def test_several_v1_signatures_one_valid(pv):
    """Stripe sends one v1 per active secret while a secret is rolled; any one may match."""
    provider = pv.provider("stripe", [SECRET])
    good, bad = _hex(pv, EVENT, pv.NOW), "0" * 64
    for header in (f"t={pv.NOW},v1={bad},v1={good}", f"t={pv.NOW},v1={good},v1={bad}",
                   f"v1={good},t={pv.NOW}", f"t={pv.NOW},v1={good},v0={bad}",
                   f"t={pv.NOW},v1=not-hex,v1={good}", f"t={pv.NOW},v1={good},x=y,novalue"):  # fmt: skip
        assert pv.outcome(provider, {"Stripe-Signature": header}, EVENT) == "accepted:0", header


def test_two_secrets_two_signatures(pv):
    """During a roll both secrets are configured and both signatures sent: the first configured wins."""
    provider = pv.provider("stripe", [SECRET, "whsec_n3w"])
    header = f"t={pv.NOW},v1={_hex(pv, EVENT, pv.NOW, 'whsec_n3w')},v1={_hex(pv, EVENT, pv.NOW)}"
    assert pv.outcome(provider, {"Stripe-Signature": header}, EVENT) == "accepted:0"
    only_new = f"t={pv.NOW},v1={_hex(pv, EVENT, pv.NOW, 'whsec_n3w')}"
    assert pv.outcome(provider, {"Stripe-Signature": only_new}, EVENT) == "accepted:1"


def test_v0_only_is_refused(pv):
    """v0 is Stripe's test-mode legacy scheme; the SDK ignores it and so do we."""
    provider = pv.provider("stripe", [SECRET])
    header = f"t={pv.NOW},v0={_hex(pv, EVENT, pv.NOW)}"
    assert pv.outcome(provider, {"Stripe-Signature": header}, EVENT) == "invalid_signature"


@pytest.mark.parametrize(
    "template",
    [
        "t={ts}",  # no signature at all
        "v1={sig}",  # no timestamp
        "t=,v1={sig}",
        "t={ts},v1=",
        "t={ts},v1={sig_upper}",  # the SDK compares lowercase hex strings
        "t={ts},v1={sig_odd}",
        "t={ts},v1={sig_short}",
        "t={ts},v1={sig_512}",
        "t={ts},v1={sig_b64}",
        "t={ts},V1={sig}",
        "T={ts},v1={sig}",
        "t={ts}, v1={sig}",  # the SDK does not trim items: " v1" is not "v1"
        "t={ts},v1 ={sig}",
        "t={ts},v1= {sig}",
        "t={ts};v1={sig}",
        "t={ts},v1={sig},t={ts}",  # two timestamps: the SDK takes the first, we refuse
        "t={ts}.0,v1={sig}",
        "t=+{ts},v1={sig}",
        "t=0{ts},v1={sig}",  # signed as "0<ts>.body"? Stripe re-formats the int: not what was signed
        "t={ts_arabic},v1={sig}",
        "t={ts}\udcff,v1={sig}",
        "t={ts},v1={sig}=",
        "t={ts},v1={sig}=junk",
        "t={ts},v1={sig}\u00e9",
        "sha256={sig}",
    ],
)
def test_malformed_headers(pv, template):
    provider = pv.provider("stripe", [SECRET])
    sig = _hex(pv, EVENT, pv.NOW)
    arabic = "".join(chr(0x660 + int(d)) for d in str(pv.NOW))
    header = template.format(
        ts=pv.NOW, sig=sig, sig_upper=sig.upper(), sig_odd=sig[:-1], sig_short=sig[:-2],
        sig_512="ab" * 64, sig_b64="3q2+7w" * 7 + "==", ts_arabic=arabic,
    )  # fmt: skip
    assert pv.outcome(provider, {"Stripe-Signature": header}, EVENT) == "invalid_signature"


def test_future_timestamp_is_stale_although_the_sdk_accepts_it(pv):
    """stripe-python checks only ``timestamp < now - tolerance``; a signature dated an hour ahead
    passes there. We refuse both directions: a future date means a clock we cannot trust, and
    the replay window would otherwise be tolerance + skew."""
    now = time.time()
    ahead = int(now) + 3600
    header = stripe.WebhookSignature.generate_signature_header(EVENT.decode(), SECRET, timestamp=ahead)
    assert _sdk_accepts(EVENT, header)
    assert pv.outcome(pv.provider("stripe", [SECRET]), {"Stripe-Signature": header}, EVENT, now) == "stale_timestamp"


def test_verdicts_agree_with_the_sdk_on_single_character_changes(pv):
    """Differential test: every one-character change of a real header, judged by the SDK and by us."""
    now = int(time.time())
    provider = pv.provider("stripe", [SECRET])
    header = stripe.WebhookSignature.generate_signature_header(EVENT.decode(), SECRET, timestamp=now)
    assert _sdk_accepts(EVENT, header)
    for i, old in enumerate(header):
        for new in "0123456789abcdefABCDEF=,tv ":
            if new == old:
                continue
            mutated = header[:i] + new + header[i + 1 :]
            ours = pv.outcome(provider, {"Stripe-Signature": mutated}, EVENT, now).startswith("accepted")
            assert ours == _sdk_accepts(EVENT, mutated), (i, new, mutated)


def test_secret_is_used_verbatim_including_the_whsec_prefix(pv):
    """Stripe keys the HMAC with the whole ``whsec_...`` string, not a base64 decoding of it."""
    provider = pv.provider("stripe", ["whsec_dGVzdA=="])
    header = stripe.WebhookSignature.generate_signature_header(EVENT.decode(), "whsec_dGVzdA==", timestamp=pv.NOW)
    assert pv.outcome(provider, {"Stripe-Signature": header}, EVENT) == "accepted:0"
