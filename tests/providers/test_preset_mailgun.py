"""Mailgun: the body's ``signature`` object holds ``timestamp``, ``token`` and ``signature``, the
hex HMAC-SHA256 (webhook signing key) of timestamp + token; ``parent-signature`` (the primary
account's key) for a subaccount's domain. ``event-data`` is not signed: the event id is
``event-data.id`` (a retry carries a new token), the signed timestamp + token are remembered
beside it (``dedup_signed_content``), so a captured signature is never accepted twice, and the
timestamp must be recent.

Mailgun publishes no Python verifier: the oracle is an independent implementation of "Securing
Webhooks" in Mailgun's docs (its Node snippet: ``createHmac('sha256', signingKey)
.update(timestamp.concat(token)).digest('hex')``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import time

import pytest

from gateway.errors import ERROR_STATUS, Rejection
from gateway.providers.signer import sample_event, sign_body
from gateway.providers.verifier import verify
from gateway.settings.loader import build_settings, load_catalog

KEY, ROTATED, PARENT = "key-mailgun-signing-0ld-4f1c", "key-mailgun-signing-n3w-9a2b", "key-parent-account-77e0"
URL = "https://gateway.example/payments/api/webhooks/mailgun/"
NOW = 1_700_000_000
TOKEN = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
EVENT_DATA = {"id": "CPgfbmQMTCKtHW6uIWtuVe", "event": "delivered", "timestamp": 1700000000.1,
              "recipient": "jane@example.com", "message": {"headers": {"subject": "Reçu 4200 ✓"}}}  # fmt: skip


def mailgun_doc(key: str = KEY, ts: int = NOW, token: str = TOKEN, parent: str | None = None) -> dict:
    sig = hmac.new(key.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    block = {"token": token, "timestamp": str(ts), "signature": sig}
    if parent:
        block["parent-signature"] = hmac.new(parent.encode(), f"{ts}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": block, "event-data": EVENT_DATA}


def body_of(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


@functools.cache
def provider(keys=(KEY,), tolerance=None):
    entry: dict = {"secrets": list(keys)}
    if tolerance:
        entry["timestamp"] = {"tolerance": tolerance}
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"mailgun": entry}}
    return build_settings("t.yaml", data, load_catalog(), {}).providers["mailgun"]


def outcome(doc_or_body, keys=(KEY,), now: float = NOW) -> str:
    body = doc_or_body if isinstance(doc_or_body, bytes) else body_of(doc_or_body)
    try:
        return f"accepted:{verify(provider(keys), {}, body, URL, now).secret_index}"
    except Rejection as exc:
        assert exc.status == ERROR_STATUS[exc.code]
        return exc.code


def test_signed_delivery_is_accepted():
    assert outcome(mailgun_doc()) == "accepted:0"


def test_rotation_and_parent_signature():
    assert outcome(mailgun_doc(ROTATED), (KEY, ROTATED)) == "accepted:1"
    assert outcome(mailgun_doc(ROTATED), (KEY,)) == "invalid_signature"
    doc = mailgun_doc("not-our-subaccount-key", parent=PARENT)
    assert outcome(doc, (PARENT,)) == "accepted:0"  # the primary account's key signs parent-signature
    assert outcome(doc, (KEY,)) == "invalid_signature"


@pytest.mark.parametrize("field", ["token", "timestamp"])
def test_token_and_timestamp_are_signed(field):
    doc = mailgun_doc()
    doc["signature"][field] = doc["signature"][field][:-1] + ("1" if doc["signature"][field][-1] != "1" else "2")
    assert outcome(doc) == "invalid_signature"


def test_event_data_is_not_signed_so_the_signed_content_is_remembered_too():
    doc = mailgun_doc()
    doc["event-data"] = {**EVENT_DATA, "event": "failed"}
    assert outcome(doc) == "accepted:0"  # Mailgun's scheme: only timestamp + token are signed
    # The id is event-data.id (a retry carries a new token), so the signed timestamp + token are
    # remembered beside it: a captured signature is never accepted twice.
    assert provider().event_id[0].path == ("event-data", "id")
    assert provider().dedup_signed_content


@pytest.mark.parametrize(
    ("skew", "expected"),
    [(-901, "stale_timestamp"), (901, "stale_timestamp"), (-900, "accepted:0"), (900, "accepted:0"),
     (86400, "stale_timestamp")],
)  # fmt: skip
def test_timestamp_tolerance(skew, expected):
    assert outcome(mailgun_doc(ts=NOW + skew)) == expected


def test_stale_with_a_bad_signature_is_invalid():
    doc = mailgun_doc(ts=NOW - 86400)
    doc["signature"]["signature"] = "0" * 64
    assert outcome(doc) == "invalid_signature"


def test_integer_timestamp_is_the_same_string():
    doc = mailgun_doc()
    doc["signature"]["timestamp"] = NOW
    assert outcome(doc) == "accepted:0"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signature"),
        lambda d: d.update(signature="x"),
        lambda d: d["signature"].pop("signature"),
        lambda d: d["signature"].update(signature=""),
    ],
)
def test_missing_signature(mutate):
    doc = mailgun_doc()
    mutate(doc)
    assert outcome(doc) == "missing_signature"


@pytest.mark.parametrize(
    "spell",
    [str.upper, lambda s: s[:-1], lambda s: s + "0", lambda s: " " + s, lambda s: s + "\u00e9", lambda s: 42,
     lambda s: "sha256=" + s, lambda s: __import__("base64").b64encode(bytes.fromhex(s)).decode()],
)  # fmt: skip
def test_malformed_signature(spell):
    doc = mailgun_doc()
    doc["signature"]["signature"] = spell(doc["signature"]["signature"])
    assert outcome(doc) in ("invalid_signature", "missing_signature")


@pytest.mark.parametrize(
    "block",
    [{"token": TOKEN, "timestamp": None}, {"token": 5, "timestamp": str(NOW)}, {"token": TOKEN, "timestamp": "17e8"},
     {"token": TOKEN, "timestamp": True}, {"token": "", "timestamp": str(NOW)}, {"token": TOKEN, "timestamp": "-1"}],
)  # fmt: skip
def test_malformed_timestamp_and_token(block):
    doc = mailgun_doc()
    doc["signature"].update(block)
    assert outcome(doc) == "invalid_signature"


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"\xff", b'{"signature": []}', b"[" * 100000])
def test_malformed_bodies_are_4xx(body):
    assert outcome(body) in ("invalid_json", "missing_signature", "invalid_signature")


def test_random_bodies_only_ever_yield_rejections():
    rng = random.Random("fuzz-mailgun")
    good = body_of(mailgun_doc())
    for _ in range(500):
        i = rng.randrange(len(good))
        body = rng.choice([good[:i], good[:i] + rng.randbytes(1) + good[i + 1 :], rng.randbytes(i % 64)])
        result = outcome(body)
        if result == "accepted:0":
            assert json.loads(body)["signature"] == mailgun_doc()["signature"]  # only event-data changed
            continue
        assert result in ("invalid_json", "missing_signature", "invalid_signature", "stale_timestamp"), result


def test_our_signer_signs_as_documented():
    spec = provider((KEY, ROTATED))
    body, _ = sample_event(spec)
    for index, key in enumerate((KEY, ROTATED)):
        signed = json.loads(sign_body(spec, body, now=NOW, secret_index=index))
        block = signed["signature"]
        expected = hmac.new(key.encode(), (block["timestamp"] + block["token"]).encode(), hashlib.sha256).hexdigest()
        assert block["signature"] == expected
        assert outcome(body_of(signed), (KEY, ROTATED)) == f"accepted:{index}"


async def test_delivery_through_the_gateway(make_gateway):
    gateway = await make_gateway(providers={"mailgun": {"secrets": [KEY]}})
    body = body_of(mailgun_doc(ts=int(time.time())))
    headers = {"Content-Type": "application/json"}
    resp = await gateway.client.post(gateway.url("mailgun"), data=body, headers=headers)
    answer = await resp.json()
    assert (resp.status, answer["status"], answer["event_id"]) == (200, "forwarded", EVENT_DATA["id"])
    assert gateway.upstream.events[-1].event["data"]["event_type"] == "delivered"
    # the same signature with other event-data, even another event id: a replay, never forwarded
    for change in ({"event": "complained"}, {"id": "ForgedEventId0000000000", "event": "complained"}):
        doc = json.loads(body)
        doc["event-data"].update(change)
        again = await gateway.client.post(gateway.url("mailgun"), data=body_of(doc), headers=headers)
        assert (await again.json())["status"] == "duplicate"
    assert len(gateway.upstream.events) == 1
    assert 'webhook_gateway_signed_content_replays_total{provider="mailgun"} 1.0' in gateway.metrics_text()


async def test_a_retry_with_a_new_token_is_a_duplicate_of_the_same_event(make_gateway):
    """Mailgun retries a failed delivery with a new token and timestamp: event-data.id is what
    stays, so the retry is a duplicate once the first attempt was accepted, and goes through
    when the first failed."""
    gateway = await make_gateway(providers={"mailgun": {"secrets": [KEY]}})
    headers = {"Content-Type": "application/json"}
    now = int(time.time())
    gateway.upstream.then(500)
    first = await gateway.client.post(gateway.url("mailgun"), data=body_of(mailgun_doc(ts=now)), headers=headers)
    assert first.status == 502
    retry = body_of(mailgun_doc(ts=now + 60, token="f" * 50))
    resp = await gateway.client.post(gateway.url("mailgun"), data=retry, headers=headers)
    assert (await resp.json())["status"] == "forwarded"
    later = body_of(mailgun_doc(ts=now + 120, token="a" * 50))
    resp = await gateway.client.post(gateway.url("mailgun"), data=later, headers=headers)
    answer = await resp.json()
    assert (answer["status"], answer["event_id"]) == ("duplicate", EVENT_DATA["id"])
    assert len(gateway.upstream.events) == 1


async def test_catalog_sample_through_the_gateway(make_gateway):
    gateway = await make_gateway(providers={"mailgun": {"secrets": [KEY]}})
    spec = gateway.settings.providers["mailgun"]
    resp = await gateway.post("mailgun", sign_body(spec, sample_event(spec)[0]))
    assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")
