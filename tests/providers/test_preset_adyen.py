"""Adyen: each NotificationRequestItem carries ``additionalData.hmacSignature``, the base64
HMAC-SHA256, with the hex HMAC key, of
``pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success``.

Oracle: the official ``Adyen`` SDK: ``Adyen.util.generate_notification_sig`` signs an item and
``is_valid_hmac_notification`` verifies. The SDK checks only the first item of a batch; the
gateway checks every one (an unsigned item appended to a signed batch would pass the SDK).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import random
import time

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification

from gateway.errors import ERROR_STATUS, ConfigError, Rejection
from gateway.providers.signer import sample_event, sign, sign_body
from gateway.providers.verifier import verify
from gateway.settings.loader import build_settings, load_catalog

KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ROTATED = "0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20"
URL = "https://gateway.example/payments/api/webhooks/adyen/"
NOW = 1_700_000_000


def item(psp: str = "7914073381342284", value: int = 4200, **extra) -> dict:
    base = {
        "amount": {"currency": "EUR", "value": value}, "eventCode": "AUTHORISATION",
        "eventDate": "2023-11-14T22:13:20+01:00", "merchantAccountCode": "YourMerchantAccount",
        "merchantReference": "order-café-✓", "paymentMethod": "visa", "pspReference": psp, "success": "true",
        "additionalData": {"authCode": "58747", "cardSummary": "1111"},
    }  # fmt: skip
    base.update(extra)
    return base


def signed(key: str, *items: dict) -> dict:
    out = []
    for it in items:
        it = copy.deepcopy(it)
        sig = generate_notification_sig({k: v for k, v in it.items() if k != "additionalData"}, key).decode()
        it.setdefault("additionalData", {})["hmacSignature"] = sig
        out.append({"NotificationRequestItem": it})
    return {"live": "false", "notificationItems": out}


def body_of(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


@functools.cache
def provider(keys=(KEY,)):
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"adyen": {"secrets": list(keys)}}}
    return build_settings("t.yaml", data, load_catalog(), {}).providers["adyen"]


def outcome(doc_or_body, keys=(KEY,)) -> str:
    body = doc_or_body if isinstance(doc_or_body, bytes) else body_of(doc_or_body)
    try:
        return f"accepted:{verify(provider(keys), {}, body, URL, NOW).secret_index}"
    except Rejection as exc:
        assert exc.status == ERROR_STATUS[exc.code]
        return exc.code


def test_sdk_signed_item_is_accepted():
    doc = signed(KEY, item())
    assert is_valid_hmac_notification(doc, KEY)
    assert outcome(doc) == "accepted:0"


def test_rotation_reports_which_key_matched():
    assert outcome(signed(ROTATED, item()), (KEY, ROTATED)) == "accepted:1"
    assert outcome(signed(ROTATED, item()), (KEY,)) == "invalid_signature"


def test_key_is_hex_not_text():
    """The SDK decodes the key from hex; the same characters used as raw bytes are another key."""
    import hmac as _hmac

    text = "pspReference::YourMerchantAccount:order:4200:EUR:AUTHORISATION:true"
    raw = __import__("base64").b64encode(_hmac.new(KEY.encode(), text.encode(), hashlib.sha256).digest()).decode()
    doc = signed(KEY, item(merchantReference="order"))
    doc["notificationItems"][0]["NotificationRequestItem"]["additionalData"]["hmacSignature"] = raw
    assert outcome(doc) == "invalid_signature"
    with pytest.raises(ConfigError, match="not valid hex"):
        provider(("not-hex-key",))


@pytest.mark.parametrize(
    ("field", "value"),
    [("value", 4201), ("currency", "USD"), ("pspReference", "7914073381342285"), ("eventCode", "CAPTURE"),
     ("success", "false"), ("merchantReference", "order-2"), ("merchantAccountCode", "Other"),
     ("originalReference", "X")],
)  # fmt: skip
def test_every_signed_field_is_signed(field, value):
    doc = signed(KEY, item())
    it = doc["notificationItems"][0]["NotificationRequestItem"]
    if field in ("value", "currency"):
        it["amount"][field] = value
    else:
        it[field] = value
    assert not is_valid_hmac_notification(doc, KEY)
    assert outcome(doc) == "invalid_signature"


def test_unsigned_fields_are_not_signed():
    """What Adyen does not sign (eventDate, paymentMethod, additionalData) may change: as the SDK."""
    doc = signed(KEY, item())
    it = doc["notificationItems"][0]["NotificationRequestItem"]
    it["eventDate"], it["paymentMethod"] = "2030-01-01T00:00:00+01:00", "mc"
    assert is_valid_hmac_notification(doc, KEY)
    assert outcome(doc) == "accepted:0"


def test_every_item_of_a_batch_is_verified():
    doc = signed(KEY, item("1111"), item("2222"), item("3333"))
    assert outcome(doc) == "accepted:0"
    forged = copy.deepcopy(doc)
    forged["notificationItems"][2]["NotificationRequestItem"]["amount"]["value"] = 1
    assert is_valid_hmac_notification(forged, KEY)  # the SDK looks at the first item only
    assert outcome(forged) == "invalid_signature"
    unsigned = copy.deepcopy(doc)
    del unsigned["notificationItems"][1]["NotificationRequestItem"]["additionalData"]["hmacSignature"]
    assert outcome(unsigned) == "missing_signature"
    mixed = signed(KEY, item("1111"))
    mixed["notificationItems"] += signed(ROTATED, item("2222"))["notificationItems"]
    assert outcome(mixed, (KEY, ROTATED)) == "invalid_signature"  # one batch, one key


def test_boolean_success_as_the_python_sdk_signs_it():
    doc = signed(KEY, item(success=True))
    assert is_valid_hmac_notification(doc, KEY)
    assert outcome(doc) == "accepted:0"
    doc["notificationItems"][0]["NotificationRequestItem"]["success"] = False
    assert outcome(doc) == "invalid_signature"


def test_absent_fields_sign_as_empty():
    it = item()
    del it["merchantReference"]
    doc = signed(KEY, it)
    assert is_valid_hmac_notification(doc, KEY)
    assert outcome(doc) == "accepted:0"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda doc: doc.pop("notificationItems"),
        lambda doc: doc.update(notificationItems=[]),
        lambda doc: doc["notificationItems"][0]["NotificationRequestItem"].pop("additionalData"),
        lambda doc: doc["notificationItems"][0]["NotificationRequestItem"]["additionalData"].update(hmacSignature=""),
        lambda doc: doc["notificationItems"][0]["NotificationRequestItem"]["additionalData"].pop("hmacSignature"),
    ],
)
def test_missing_signatures(mutate):
    doc = signed(KEY, item())
    mutate(doc)
    assert outcome(doc) == "missing_signature"


def test_empty_signature_makes_the_sdk_raise_and_us_answer_401():
    doc = signed(KEY, item())
    doc["notificationItems"][0]["NotificationRequestItem"]["additionalData"]["hmacSignature"] = ""
    with pytest.raises(ValueError):
        is_valid_hmac_notification(doc, KEY)
    assert ERROR_STATUS[outcome(doc)] == 401


@pytest.mark.parametrize(
    "spell",
    [
        lambda s: s.rstrip("="),
        lambda s: __import__("base64").b64decode(s).hex(),
        lambda s: s.replace("+", "-").replace("/", "_") if ("+" in s or "/" in s) else s + "A",
        lambda s: s[:-4],
        lambda s: s + "AAAA",
        lambda s: " " + s,
        lambda s: s + "\u00e9",
        lambda s: 42,
        lambda s: [s],
        lambda s: None,
    ],
)
def test_malformed_signatures(spell):
    doc = signed(KEY, item())
    extra = doc["notificationItems"][0]["NotificationRequestItem"]["additionalData"]
    extra["hmacSignature"] = spell(extra["hmacSignature"])
    assert outcome(doc) in ("invalid_signature", "missing_signature")
    assert not outcome(doc).startswith("accepted")


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"notificationItems": "x"}', b'{"notificationItems": [1, null]}',
     b'{"notificationItems": [{"NotificationRequestItem": []}]}', b"\xff\xfe", b"[" * 100000],
)  # fmt: skip
def test_malformed_bodies_are_4xx(body):
    assert outcome(body) in ("invalid_json", "missing_signature", "invalid_signature")


def test_a_body_of_boolean_items_is_refused_cheaply():
    """Every signed field a JSON boolean, in thousands of unsigned items: the verifier built both
    spellings of each field (256 payloads per item, 1.1 million for 1 MiB: 0.7 s of CPU) before
    refusing. Now `success` alone has two, and a request holds at most 100 items."""
    from gateway.providers.schemes.adyen import MAX_ITEMS, Adyen

    junk = item(**dict.fromkeys(("pspReference", "originalReference", "merchantAccountCode",
                                 "merchantReference", "eventCode", "success"), True))  # fmt: skip
    junk["amount"] = {"value": True, "currency": True}
    junk["additionalData"] = {"hmacSignature": "x"}
    assert len(Adyen()._part({"NotificationRequestItem": junk}).payloads) == 2
    items = [{"NotificationRequestItem": junk}] * (MAX_ITEMS + 1)
    assert outcome({"notificationItems": items}) == "invalid_signature"
    assert outcome({"notificationItems": items[:MAX_ITEMS]}) == "invalid_signature"


def test_a_replay_that_repeats_or_respells_an_item_has_the_same_signed_content():
    """Adyen's event id hashes the body, so a replay under a new id is caught by the digest of
    what the signatures are over. It hashed every candidate spelling of every item: the item
    sent twice, or `success` as a JSON boolean, made another digest and passed as a new event."""
    genuine = signed(KEY, item())
    twice = {**genuine, "notificationItems": genuine["notificationItems"] * 2}
    respelled = copy.deepcopy(genuine)
    respelled["notificationItems"][0]["NotificationRequestItem"]["success"] = True
    digests = {verify(provider(), {}, body_of(doc), URL, NOW).signed_payloads for doc in (genuine, twice, respelled)}
    assert len(digests) == 1 and provider().dedup_signed_content


def test_random_bodies_only_ever_yield_rejections():
    rng = random.Random("fuzz-adyen")
    good = body_of(signed(KEY, item("1"), item("2")))
    for _ in range(500):
        i = rng.randrange(len(good))
        body = rng.choice([good[:i], good[:i] + rng.randbytes(1) + good[i + 1 :], rng.randbytes(i % 64)])
        result = outcome(body)
        if result == "accepted:0":  # a change to a field Adyen does not sign: every item still verifies
            items = json.loads(body)["notificationItems"]
            assert all(is_valid_hmac_notification(copy.deepcopy(it["NotificationRequestItem"]), KEY) for it in items)
            continue
        assert result in ("invalid_json", "missing_signature", "invalid_signature"), (body[:80], result)


def test_our_signer_signs_as_the_sdk():
    spec = provider((KEY, ROTATED))
    body, _ = sample_event(spec)
    for index, key in enumerate((KEY, ROTATED)):
        signed_body = sign_body(spec, body, secret_index=index)
        assert is_valid_hmac_notification(json.loads(signed_body), key)
        assert sign(spec, signed_body, URL, secret_index=index) == {"Content-Type": "application/json"}
        assert outcome(signed_body, (KEY, ROTATED)) == f"accepted:{index}"


async def test_delivery_through_the_gateway(make_gateway):
    gateway = await make_gateway(providers={"adyen": {"secrets": [KEY]}})
    body = body_of(signed(KEY, item()))
    resp = await gateway.client.post(gateway.url("adyen"), data=body, headers={"Content-Type": "application/json"})
    answer = await resp.json()
    assert (resp.status, answer["status"], answer["event_id"]) == (200, "forwarded", hashlib.sha256(body).hexdigest())
    data = gateway.upstream.events[-1].event["data"]
    assert data["event_type"] == "AUTHORISATION"
    assert data["payment"] == {"id": "7914073381342284", "status": "completed", "provider_status": "true",
                               "amount": "42.00", "currency": "EUR"}  # fmt: skip
    again = await gateway.client.post(gateway.url("adyen"), data=body, headers={"Content-Type": "application/json"})
    assert (await again.json())["status"] == "duplicate"


async def test_catalog_sample_through_the_gateway(make_gateway):
    gateway = await make_gateway(providers={"adyen": {"secrets": [KEY]}})
    spec = gateway.settings.providers["adyen"]
    body = sign_body(spec, sample_event(spec)[0], now=time.time())
    resp = await gateway.post("adyen", body)
    assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")
