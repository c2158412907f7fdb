"""Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` with
the key ``base64(secret without "whsec_")``; several space-separated signatures during rotation.

Oracles: the official ``standardwebhooks`` package (signer and verifier) and ``svix`` (the same
scheme under ``svix-*`` header names; the catalog has only the standard preset, so svix's
signatures are sent under the ``webhook-*`` names).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
import svix.webhooks

from gateway.providers.signer import sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"type":"invoice.paid","data":{"id":"inv_1","amount":1500,"currency":"EUR"}}'


def _headers(msg_id: str, ts: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def _sdk_sig(ts: int, body: bytes = BODY, msg_id: str = "msg_1", secret: str = SECRET) -> str:
    return standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())


def test_published_test_vector(pv):
    """The reference vector of the Standard Webhooks test suite."""
    headers = _headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    provider = pv.provider("standard-webhooks", [SECRET])
    assert pv.outcome(provider, headers, b'{"test": 2432232314}', now=1614265330) == "accepted:0"


def test_svix_signatures_under_webhook_header_names(pv):
    provider = pv.provider("standard-webhooks", [SECRET])
    signature = svix.webhooks.Webhook(SECRET).sign("msg_svix", datetime.fromtimestamp(pv.NOW, UTC), BODY.decode())
    assert pv.outcome(provider, _headers("msg_svix", pv.NOW, signature), BODY) == "accepted:0"


def test_svix_header_names_are_not_read_by_the_standard_preset(pv):
    provider = pv.provider("standard-webhooks", [SECRET])
    signature = svix.webhooks.Webhook(SECRET).sign("msg_svix", datetime.fromtimestamp(pv.NOW, UTC), BODY.decode())
    headers = {"svix-id": "msg_svix", "svix-timestamp": str(pv.NOW), "svix-signature": signature}
    assert pv.outcome(provider, headers, BODY) == "missing_signature"


def test_our_signer_is_accepted_by_both_sdks(pv):
    provider = pv.provider("standard-webhooks", [SECRET])
    headers = sign(provider, BODY, pv.URL, now=time.time(), headers={"webhook-id": "msg_ours"})
    standardwebhooks.Webhook(SECRET).verify(BODY, headers)
    svix.webhooks.Webhook(SECRET).verify(BODY, headers)


@pytest.mark.parametrize(
    "template",
    [
        "v1,{bad} v1,{good}",
        "v1,{good} v1,{bad}",
        "v1a,{bad} v1,{good}",  # an asymmetric (ed25519) signature we do not check, then ours
        "v2,{good} v1,{good}",
        "v1,{bad} v1,{bad} v1,{bad} v1,{good}",
        "v1,not-base64 v1,{good}",
    ],
)
def test_signature_lists_with_one_valid_entry(pv, template):
    provider = pv.provider("standard-webhooks", [SECRET])
    bad = base64.b64encode(b"\x00" * 32).decode()
    header = template.format(good=_sdk_sig(pv.NOW).split(",", 1)[1], bad=bad)
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, header), BODY) == "accepted:0"


def test_rotation_both_signatures_in_one_header(pv):
    other = "whsec_" + base64.b64encode(b"rotated-in-signing-key-32-bytes!").decode()
    provider = pv.provider("standard-webhooks", [other, SECRET])
    header = f"{_sdk_sig(pv.NOW, secret=SECRET)} {_sdk_sig(pv.NOW, secret=other)}"
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, header), BODY) == "accepted:0"
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, _sdk_sig(pv.NOW)), BODY) == "accepted:1"


@pytest.mark.parametrize(
    "make",
    [
        lambda g: "v2," + g,
        lambda g: "v1a," + g,
        lambda g: g,  # no version
        lambda g: "v1 " + g,  # wrong separator inside the item
        lambda g: "v1=" + g,
        lambda g: "v1," + g.rstrip("="),  # padding dropped
        lambda g: "v1," + g.replace("+", "-").replace("/", "_"),  # base64url instead of base64
        lambda g: "v1," + _unused_bits_set(g),  # the same 32 bytes, spelt non-canonically
        lambda g: "v1," + base64.b64encode(base64.b64decode(g)[:31]).decode(),  # 31-byte MAC
        lambda g: "v1," + base64.b64decode(g).hex(),  # hex instead of base64
        lambda g: "v1," + g + "\u00e9",
        lambda g: "v1,\u00e9" + g[1:],
        lambda g: " v1," + g + "\x00",
        lambda g: "v1," + g + ",x",
    ],
)
def test_malformed_signatures(pv, make):
    provider = pv.provider("standard-webhooks", [SECRET])
    header = make(_sdk_sig(pv.NOW).split(",", 1)[1])
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, header), BODY) == "invalid_signature", header


def _unused_bits_set(sig: str) -> str:
    """A 32-byte MAC is 43 base64 digits + "=": the last digit carries 2 unused bits, always 0."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    value = alphabet.index(sig[-2])
    assert value % 4 == 0
    return sig[:-2] + alphabet[value + 1] + "="


def test_non_canonical_base64_is_refused_although_the_python_sdk_takes_it(pv):
    """Every signer writes canonical padded base64, and the JavaScript library compares the
    strings; we accept only that spelling, so a signature has one form (no malleability).
    standardwebhooks-python decodes without validation and compares bytes, so it also takes a
    variant whose unused trailing bits are set: no sender writes one."""
    now = int(time.time())
    good = _sdk_sig(now).split(",", 1)[1]
    variant = _headers("msg_1", now, "v1," + _unused_bits_set(good))
    assert base64.b64decode(_unused_bits_set(good)) == base64.b64decode(good)
    standardwebhooks.Webhook(SECRET).verify(BODY, variant)  # the Python SDK's leniency
    assert pv.outcome(pv.provider("standard-webhooks", [SECRET]), variant, BODY, now) == "invalid_signature"


def test_id_and_timestamp_are_signed(pv):
    provider = pv.provider("standard-webhooks", [SECRET])
    sig = _sdk_sig(pv.NOW, msg_id="msg_1")
    assert pv.outcome(provider, _headers("msg_2", pv.NOW, sig), BODY) == "invalid_signature"
    assert pv.outcome(provider, _headers("msg_1", pv.NOW + 1, sig), BODY) == "invalid_signature"


def test_id_with_bytes_that_are_not_utf8(pv):
    """aiohttp hands non-UTF-8 header bytes over as lone surrogates; the sender signed the raw
    bytes, and we verify those bytes (never a 500)."""
    provider = pv.provider("standard-webhooks", [SECRET])
    raw_id = b"msg_\xff\xfe"
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = pv.mac(key, raw_id + f".{pv.NOW}.".encode() + BODY)
    headers = _headers(raw_id.decode("utf-8", "surrogateescape"), pv.NOW, "v1," + base64.b64encode(mac).decode())
    assert pv.outcome(provider, headers, BODY) == "accepted:0"
    assert pv.outcome(provider, {**headers, "webhook-id": "msg_\ud800"}, BODY) == "invalid_signature"


def test_sdk_verifier_agrees_on_timestamps(pv):
    """The SDK refuses beyond five minutes in both directions; so do we (same boundaries)."""
    now = int(time.time())
    provider = pv.provider("standard-webhooks", [SECRET])
    for skew, expected in (
        (-290, "accepted:0"),
        (290, "accepted:0"),
        (-310, "stale_timestamp"),
        (310, "stale_timestamp"),
    ):
        headers = _headers("msg_1", now + skew, _sdk_sig(now + skew))
        assert pv.outcome(provider, headers, BODY, now) == expected
        if expected.startswith("accepted"):
            standardwebhooks.Webhook(SECRET).verify(BODY, headers)
        else:
            with pytest.raises(standardwebhooks.WebhookVerificationError):
                standardwebhooks.Webhook(SECRET).verify(BODY, headers)


# --- v1a: Ed25519 with a whpk_ public key (the spec's asymmetric scheme) ---------------------------
# The Python SDK signs and verifies v1 only: v1a signatures are made with cryptography's Ed25519
# over the same "id.timestamp.body", as the spec describes.


def _ed25519(seed: str):
    import hashlib

    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def _whpk(seed: str) -> str:
    return "whpk_" + base64.b64encode(_ed25519(seed).public_key().public_bytes_raw()).decode()


def _v1a(seed: str, ts: int, body: bytes = BODY, msg_id: str = "msg_1") -> str:
    return "v1a," + base64.b64encode(_ed25519(seed).sign(f"{msg_id}.{ts}.".encode() + body)).decode()


def _public_provider(pv, seeds=("sw-key",), secrets=()):
    return pv.provider("standard-webhooks", list(secrets), public_keys=[_whpk(s) for s in seeds])


def test_v1a_ed25519_is_accepted(pv):
    provider = _public_provider(pv)
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, _v1a("sw-key", pv.NOW)), BODY) == "accepted:0"


def test_v1a_refusals(pv):
    provider = _public_provider(pv)
    good = _v1a("sw-key", pv.NOW)
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, good), BODY + b" ") == "invalid_signature"
    assert pv.outcome(provider, _headers("msg_2", pv.NOW, good), BODY) == "invalid_signature"
    assert pv.outcome(provider, _headers("msg_1", pv.NOW, _v1a("other", pv.NOW)), BODY) == "invalid_signature"
    stale = _headers("msg_1", pv.NOW - 301, _v1a("sw-key", pv.NOW - 301))
    assert pv.outcome(provider, stale, BODY) == "stale_timestamp"
    for header in ("v1," + good[4:], "v1a," + good[4:].rstrip("="), "v1a," + base64.b64decode(good[4:]).hex(),
                   "v1a," + base64.b64encode(b"\0" * 32).decode(), "v1a " + good[4:], good[4:]):  # fmt: skip
        assert pv.outcome(provider, _headers("msg_1", pv.NOW, header), BODY) == "invalid_signature", header
    assert pv.outcome(provider, {"webhook-id": "msg_1", "webhook-timestamp": str(pv.NOW)}, BODY) == "missing_signature"


def test_v1a_rotation_and_both_schemes(pv):
    provider = _public_provider(pv, seeds=("old", "new"), secrets=[SECRET])
    ts = pv.NOW
    assert pv.outcome(provider, _headers("msg_1", ts, _sdk_sig(ts)), BODY) == "accepted:0"  # v1: the secret
    assert pv.outcome(provider, _headers("msg_1", ts, _v1a("old", ts)), BODY) == "accepted:1"  # then the keys
    assert pv.outcome(provider, _headers("msg_1", ts, _v1a("new", ts)), BODY) == "accepted:2"
    both = f"{_v1a('new', ts)} {_sdk_sig(ts)}"
    assert pv.outcome(provider, _headers("msg_1", ts, both), BODY) == "accepted:0"


def test_sdk_ignores_v1a_next_to_v1(pv):
    """A sender with both keys sends both signatures: the v1-only SDK and we agree."""
    now = int(time.time())
    header = f"{_v1a('sw-key', now)} {_sdk_sig(now)}"
    standardwebhooks.Webhook(SECRET).verify(BODY, _headers("msg_1", now, header))
    only_public = _public_provider(pv)
    assert pv.outcome(only_public, _headers("msg_1", now, header), BODY, now) == "accepted:0"


def test_v1_with_only_a_public_key_configured_is_refused(pv):
    assert pv.outcome(_public_provider(pv), _headers("msg_1", pv.NOW, _sdk_sig(pv.NOW)), BODY) == "invalid_signature"


def test_a_whsec_secret_given_as_public_key_is_a_config_error(pv):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="public_keys"):
        pv.provider("standard-webhooks", [], public_keys=[SECRET])
