"""``signature.repeated: any``: a provider that sends the signature header once per active secret
while one is rotated (Mollie) has every copy read, and any may match. Off (``refuse``) by default:
a repeated header is then a 401, whatever its copies hold."""

from __future__ import annotations

import hashlib
import hmac

BODY = b'{"resource":"event","id":"event_1","type":"payment.paid"}'


def sig(secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()


def test_any_copy_may_match(pv):
    custom = {"algorithm": "hmac-sha256", "header": "X-Sig", "prefix": "sha256=", "repeated": "any"}
    provider = pv.provider("custom", ["old"], signature=custom)
    assert provider.signature.repeated
    assert pv.outcome(provider, pv.multi(("X-Sig", sig("new")), ("X-Sig", sig("old"))), BODY) == "accepted:0"
    assert pv.outcome(provider, pv.multi(("X-Sig", sig("new")), ("X-Sig", sig("new"))), BODY) == "invalid_signature"
    assert pv.outcome(provider, pv.multi(("X-Sig", "garbage"), ("x-sig", sig("old"))), BODY) == "accepted:0"
    assert pv.outcome(provider, pv.multi(("X-Sig", "garbage"), ("X-Sig", "sha256=zz")), BODY) == "invalid_signature"
    assert pv.outcome(provider, pv.multi(("X-Sig", " "), ("X-Sig", "")), BODY) == "missing_signature"
    assert pv.outcome(provider, {"X-Sig": sig("old")}, BODY) == "accepted:0"


def test_refused_by_default(pv):
    custom = {"algorithm": "hmac-sha256", "header": "X-Sig", "prefix": "sha256="}
    provider = pv.provider("custom", ["old"], signature=custom)
    assert pv.outcome(provider, pv.multi(("X-Sig", sig("old")), ("X-Sig", sig("old"))), BODY) == "invalid_signature"


def test_copies_with_different_timestamps_are_refused(pv):
    custom = {
        "algorithm": "hmac-sha256", "header": "X-Sig", "style": "list", "signature_keys": ["v1"],
        "timestamp_key": "t", "payload": "{timestamp}.{body}", "repeated": "any",
    }  # fmt: skip
    provider = pv.provider("custom", ["old"], signature=custom, timestamp={"from": "signature"})

    def header(ts: int) -> str:
        return f"t={ts},v1=" + hmac.new(b"old", f"{ts}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert pv.outcome(provider, pv.multi(("X-Sig", header(pv.NOW)), ("X-Sig", header(pv.NOW))), BODY) == "accepted:0"
    mixed = pv.multi(("X-Sig", header(pv.NOW)), ("X-Sig", header(pv.NOW - 1)))
    assert pv.outcome(provider, mixed, BODY) == "invalid_signature"
