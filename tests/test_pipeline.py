"""End to end, one preset at a time: a signed delivery reaches the real upstream as one CloudEvent."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from gateway.providers.schemes.nowpayments import sorted_json

CE_TYPE = "application/cloudevents+json"


def check_cloudevent(kit, received, *, provider: str, event_id: str, event_type: str, body: bytes) -> dict:
    """The common shape of every forwarded event; returns ``data`` for preset-specific checks."""
    assert received.headers["Content-Type"] == CE_TYPE
    assert kit.TRACEPARENT.match(received.headers["traceparent"]), received.headers["traceparent"]
    event = received.event
    assert event["specversion"] == "1.0"
    assert event["id"] == event_id
    assert event["source"] == f"webhook-gateway/{provider}"
    assert event["type"] == f"{provider}.{event_type}"
    assert event["datacontenttype"] == "application/json"
    sent_at = datetime.fromisoformat(event["time"])
    assert sent_at.tzinfo is not None
    assert abs(datetime.now(UTC) - sent_at) < timedelta(seconds=30)
    data = event["data"]
    assert data["provider"] == provider
    assert data["event_type"] == event_type
    assert data["event_id"] == event_id
    # The payload is spliced in byte for byte: no re-serialization, numbers and order intact.
    assert received.raw.endswith(b'"payload":' + body + b"}}"), received.raw
    assert data["payload"] == json.loads(body)
    return data


async def test_stripe_payment_intent_succeeded(gateway, kit):
    body = kit.stripe_body("evt_1Nstripe")
    reply = await gateway.deliver_ok("stripe", body)
    assert reply == {"success": True, "status": "forwarded", "event_id": "evt_1Nstripe"}
    [received] = gateway.upstream.events
    data = check_cloudevent(
        kit, received, provider="stripe", event_id="evt_1Nstripe", event_type="payment_intent.succeeded", body=body
    )
    assert data["payment"] == {
        "id": "pi_3Nabc",
        "status": "completed",
        "provider_status": "succeeded",
        "amount": "20.00",
        "currency": "USD",
    }


async def test_stripe_zero_decimal_currency_and_non_payment_event(gateway, kit):
    doc = json.loads(kit.stripe_body("evt_jpy"))
    doc["data"]["object"].update(currency="jpy", amount=5000, amount_received=5000)
    body = json.dumps(doc).encode()
    await gateway.deliver_ok("stripe", body)
    assert gateway.upstream.events[-1].event["data"]["payment"]["amount"] == "5000"
    other = kit.stripe_body("evt_customer", etype="customer.created")
    await gateway.deliver_ok("stripe", other)
    assert gateway.upstream.events[-1].event["data"]["payment"] is None


async def test_github_push(gateway, kit):
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    body = b'{"ref":"refs/heads/main","after":"0d1a26e6","repository":{"full_name":"octo-org/octo-repo"}}'
    await gateway.deliver_ok("github", body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery})
    [received] = gateway.upstream.events
    data = check_cloudevent(kit, received, provider="github", event_id=delivery, event_type="push", body=body)
    assert data["payment"] is None


NOWPAYMENTS_STATUSES = {
    "waiting": "pending",
    "confirming": "processing",
    "confirmed": "processing",
    "sending": "processing",
    "partially_paid": "partial",
    "finished": "completed",
    "failed": "failed",
    "refunded": "refunded",
    "expired": "expired",
}


@pytest.mark.parametrize(("raw_status", "status"), NOWPAYMENTS_STATUSES.items())
async def test_nowpayments_status_map(gateway, kit, raw_status, status):
    body = (
        b'{"payment_id":5077125051,"payment_status":"' + raw_status.encode() + b'",'
        b'"pay_address":"3EZ2uTdVDAMFXTfc6uLDDKR6o8qKBZXVkj","price_amount":25.50,"price_currency":"usd",'
        b'"pay_amount":0.00029,"actually_paid":0,"pay_currency":"btc","order_id":"order-42","order_description":null}'
    )
    # NOWPayments sends no id: the key is a hash of what it signed (the sorted-key form).
    event_id = hashlib.sha256(sorted_json(body)[0]).hexdigest()
    await gateway.deliver_ok("nowpayments", body)
    [received] = gateway.upstream.events
    data = check_cloudevent(kit, received, provider="nowpayments", event_id=event_id, event_type=raw_status, body=body)
    assert b'"price_amount":25.50,' in received.raw
    payment = data["payment"]
    assert payment["id"] == "5077125051"
    assert payment["status"] == status
    assert payment["provider_status"] == raw_status
    assert Decimal(payment["amount"]) == Decimal("25.50")
    assert payment["currency"] == "USD"


async def test_standard_webhooks(gateway, kit):
    body = b'{"type":"invoice.paid","timestamp":"2024-01-01T00:00:00Z","data":{"id":"inv_1","amount":1500}}'
    await gateway.deliver_ok("standard-webhooks", body, {"webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"})
    [received] = gateway.upstream.events
    check_cloudevent(
        kit,
        received,
        provider="standard-webhooks",
        event_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        event_type="invoice.paid",
        body=body,
    )


async def test_shopify_order_paid(gateway, kit):
    event_id = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Event-Id": event_id, "X-Shopify-Webhook-Id": "wh-1"}
    body = b'{"id":820982911946154508,"financial_status":"paid","total_price":"49.90","currency":"EUR"}'
    await gateway.deliver_ok("shopify", body, headers)
    [received] = gateway.upstream.events
    data = check_cloudevent(kit, received, provider="shopify", event_id=event_id, event_type="orders/paid", body=body)
    assert data["payment"] == {
        "id": "820982911946154508",
        "status": "completed",
        "provider_status": "paid",
        "amount": "49.90",
        "currency": "EUR",
    }


async def test_slack_event_callback(gateway, kit):
    body = (
        b'{"token":"unused","team_id":"T0001","type":"event_callback","event_id":"Ev08MFMKH6",'
        b'"event_time":1700000000,"event":{"type":"app_mention","text":"h\\u00e9llo \xe2\x9c\x93","user":"U0001"}}'
    )
    await gateway.deliver_ok("slack", body)
    [received] = gateway.upstream.events
    check_cloudevent(kit, received, provider="slack", event_id="Ev08MFMKH6", event_type="app_mention", body=body)


async def test_slack_slash_command_form(gateway, kit):
    form = {"command": "/pay", "text": "42 EUR", "trigger_id": "13345224609.738474920.8088930838d88f008e0"}
    body = urlencode(form).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    await gateway.deliver_ok("slack", body, headers)
    event = gateway.upstream.events[-1].event
    assert event["id"] == form["trigger_id"]
    assert event["type"] == "slack./pay"
    assert event["data"]["payload"] == form


async def test_each_delivery_gets_its_own_trace(gateway, kit):
    await gateway.deliver_ok("stripe", kit.stripe_body("evt_trace_1"))
    await gateway.deliver_ok("stripe", kit.stripe_body("evt_trace_2"))
    trace_ids = {r.headers["traceparent"].split("-")[1] for r in gateway.upstream.events}
    assert len(trace_ids) == 2


async def test_secret_rotation_accepts_the_old_secret(make_gateway, kit):
    secrets = ["whsec_new_secret_after_rotation", kit.SECRETS["stripe"]]
    gw = await make_gateway(providers={"stripe": {"secrets": secrets}})
    await gw.deliver_ok("stripe", kit.stripe_body("evt_rotated"))  # signed with secret #0
    from gateway.providers.signer import sign

    spec = gw.settings.providers["stripe"]
    body = kit.stripe_body("evt_rotated_old")
    headers = sign(spec, body, gw.settings.webhook_url("stripe"), secret_index=1)
    resp = await gw.client.post(gw.url("stripe"), data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert 'secret="1"' in gw.metrics_text()
