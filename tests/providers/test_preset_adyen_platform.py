"""Adyen platform webhooks (Balance Platform, Management API): the base64 HMAC-SHA256, with the
hex HMAC key, of the raw body, in the ``HmacSignature`` header; the classic notifications (each
item signed inside the body) keep working on the same ``adyen`` provider entry.

Oracle: the official ``Adyen`` SDK: ``Adyen.util.generate_payload_sig`` signs the body and
``is_valid_hmac_payload`` verifies it.
"""

from __future__ import annotations

import functools
import json
import time

import pytest
from Adyen.util import generate_notification_sig, generate_payload_sig, is_valid_hmac_payload

from gateway.errors import ERROR_STATUS, Rejection
from gateway.providers.verifier import verify
from gateway.settings.loader import build_settings, load_catalog

CLASSIC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
PLATFORM_KEY = "D7A8FBB307D7809469CA9ABCB0082E4F8D5651E46D3CDB762D02D0BF37C9E592"
URL = "https://gateway.example/payments/api/webhooks/adyen/"
#: A Balance Platform notification as Adyen documents it (balancePlatform.accountHolder.created).
PLATFORM = {
    "data": {
        "balancePlatform": "YOUR_BALANCE_PLATFORM",
        "accountHolder": {"id": "AH32272223222B59MTF7458DP", "legalEntityId": "LE3227C223222B5BPCMFXD2XG",
                          "status": "active", "description": "Liquidación café ✓"},
    },
    "environment": "test",
    "timestamp": "2024-03-01T10:00:00+01:00",
    "type": "balancePlatform.accountHolder.created",
}  # fmt: skip
MANAGEMENT = {
    "createdAt": "2024-03-01T10:00:00.000Z", "environment": "test", "type": "merchant.created",
    "data": {"merchantId": "YOUR_MERCHANT_ACCOUNT", "status": "PreActive", "companyId": "YOUR_COMPANY"},
}  # fmt: skip


def body_of(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()  # not compact: the bytes are what is signed


def sdk_header(key: str, body: bytes) -> dict[str, str]:
    return {"HmacSignature": generate_payload_sig(body, key).decode()}


@functools.cache
def provider(keys=(CLASSIC_KEY, PLATFORM_KEY)):
    data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"adyen": {"secrets": list(keys)}}}
    return build_settings("t.yaml", data, load_catalog(), {}).providers["adyen"]


def outcome(headers: dict[str, str], body: bytes, keys=(CLASSIC_KEY, PLATFORM_KEY)) -> str:
    try:
        return f"accepted:{verify(provider(keys), headers, body, URL, time.time()).secret_index}"
    except Rejection as exc:
        assert exc.status == ERROR_STATUS[exc.code]
        return exc.code


@pytest.mark.parametrize("doc", [PLATFORM, MANAGEMENT])
def test_sdk_signed_platform_webhooks_are_accepted(doc):
    body = body_of(doc)
    headers = sdk_header(PLATFORM_KEY, body)
    assert is_valid_hmac_payload(headers["HmacSignature"], PLATFORM_KEY, body)
    assert outcome(headers, body) == "accepted:1"  # the second key in the list: the platform webhook's


def test_the_body_is_signed_byte_for_byte():
    body = body_of(PLATFORM)
    headers = sdk_header(PLATFORM_KEY, body)
    for changed in (body.replace(b"active", b"closed"), body.replace(b"\n ", b"\n  ", 1), body + b" "):
        assert not is_valid_hmac_payload(headers["HmacSignature"], PLATFORM_KEY, changed)
        assert outcome(headers, changed) == "invalid_signature"


def test_the_key_is_hex_and_must_be_configured():
    body = body_of(PLATFORM)
    assert outcome(sdk_header(PLATFORM_KEY, body), body, (CLASSIC_KEY,)) == "invalid_signature"
    text_key = {"HmacSignature": generate_payload_sig(body, PLATFORM_KEY.encode().hex()).decode()}
    assert outcome(text_key, body) == "invalid_signature"


@pytest.mark.parametrize(
    "spell",
    [lambda s: "", lambda s: s.rstrip("="), lambda s: s.replace("+", "-").replace("/", "_"), lambda s: s[:-2],
     lambda s: bytes.fromhex(__import__("base64").b64decode(s).hex()).hex(), lambda s: "sha256=" + s],
)  # fmt: skip
def test_malformed_signatures_are_refused(spell):
    body = body_of(PLATFORM)
    value = spell(sdk_header(PLATFORM_KEY, body)["HmacSignature"])
    headers = {"HmacSignature": value}
    if value and value != sdk_header(PLATFORM_KEY, body)["HmacSignature"]:
        assert not is_valid_hmac_payload(value, PLATFORM_KEY, body)
    # A blank header is no platform signature: the body is then read as a classic notification.
    assert outcome(headers, body) in ("invalid_signature", "missing_signature")


def test_a_repeated_header_is_refused():
    from multidict import CIMultiDict, CIMultiDictProxy

    body = body_of(PLATFORM)
    sig = sdk_header(PLATFORM_KEY, body)["HmacSignature"]
    headers = CIMultiDictProxy(CIMultiDict([("HmacSignature", sig), ("HmacSignature", sig)]))
    assert outcome(headers, body) == "invalid_signature"


def test_classic_notifications_still_verify_on_the_same_entry():
    item = {"amount": {"currency": "EUR", "value": 1000}, "eventCode": "AUTHORISATION", "merchantAccountCode": "M",
            "merchantReference": "order-1", "pspReference": "7914073381342284", "success": "true"}  # fmt: skip
    item["additionalData"] = {"hmacSignature": generate_notification_sig(dict(item), CLASSIC_KEY).decode()}
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}).encode()
    assert outcome({}, body) == "accepted:0"
    # a platform-style header over a classic body: judged as a platform signature, which it is not
    assert outcome({"HmacSignature": item["additionalData"]["hmacSignature"]}, body) == "invalid_signature"


async def test_both_kinds_through_the_gateway(make_gateway):
    gateway = await make_gateway(providers={"adyen": {"secrets": [CLASSIC_KEY, PLATFORM_KEY]}})
    for doc in (PLATFORM, MANAGEMENT):
        body = body_of(doc)
        resp = await gateway.client.post(gateway.url("adyen"), data=body, headers=sdk_header(PLATFORM_KEY, body))
        answer = await resp.json()
        assert (resp.status, answer["status"]) == (200, "forwarded"), answer
        data = gateway.upstream.events[-1].event["data"]
        assert data["event_type"] == doc["type"] and data["verified"] is True and data["payment"] is None
        assert gateway.upstream.events[-1].raw.endswith(b'"payload":' + body + b"}}")
        # Adyen retries with the same bytes: a duplicate
        again = await gateway.client.post(gateway.url("adyen"), data=body, headers=sdk_header(PLATFORM_KEY, body))
        assert (await again.json())["status"] == "duplicate"
    forged = body_of({**PLATFORM, "type": "balancePlatform.accountHolder.updated"})
    resp = await gateway.client.post(gateway.url("adyen"), data=forged, headers=sdk_header(CLASSIC_KEY[::-1], forged))
    assert resp.status == 401
    assert len(gateway.upstream.events) == 2
