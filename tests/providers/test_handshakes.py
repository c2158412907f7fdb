"""Handshakes: a provider checking the endpoint is answered by the gateway itself, declared in the
catalog, after verification, never forwarded, never deduplicated, counted as ``handshake``.

Slack ``url_verification`` -> ``{"challenge"}``; Zoom ``endpoint.url_validation`` ->
``{"plainToken", "encryptedToken"}`` (hex HMAC-SHA256 of plainToken with the secret token);
Twitch ``webhook_callback_verification`` -> the raw challenge as text/plain; Discord PING
(type 1) -> ``{"type": 1}``, and a webhook-events PING (type 0) -> 204.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from test_preset_discord import SEED as DISCORD_SEED
from test_preset_discord import discord_sign, public_hex
from test_preset_twitch import twitch_sign
from test_preset_zoom import zoom_sign

ZOOM_SECRET, TWITCH_SECRET = "zoom-secret-token-handshake", "twitch-secret-handshake"
PROVIDERS = {
    "zoom": {"secrets": [ZOOM_SECRET]},
    "twitch": {"secrets": [TWITCH_SECRET]},
    "discord": {"public_keys": [public_hex(DISCORD_SEED)]},
}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def gw(make_gateway):
    return await make_gateway(providers=PROVIDERS)


def handshakes(gateway, provider: str) -> str:
    line = f'webhook_gateway_requests_total{{outcome="handshake",provider="{provider}"}}'
    text = gateway.metrics_text()
    return next((ln.split()[-1] for ln in text.splitlines() if ln.startswith(line)), "0")


async def test_slack_url_verification(gw):
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    ).encode()
    for _ in range(2):  # no dedup claim: the same check twice is answered twice
        resp = await gw.post("slack", body)
        assert resp.status == 200
        assert await resp.json() == {"challenge": challenge}
    assert gw.upstream.events == []
    assert handshakes(gw, "slack") == "2.0"


async def test_slack_url_verification_must_be_signed(gw):
    body = b'{"type":"url_verification","challenge":"abc"}'
    resp = await gw.post(
        "slack",
        body,
        {"X-Slack-Signature": "v0=" + "0" * 64, "X-Slack-Request-Timestamp": str(int(time.time()))},
        signed=False,
    )
    assert (resp.status, (await resp.json())["error"]["code"]) == (401, "invalid_signature")


async def test_slack_events_are_still_forwarded(gw):
    body = b'{"type":"event_callback","event_id":"Ev42","event":{"type":"app_mention"}}'
    assert (await gw.deliver_ok("slack", body))["event_id"] == "Ev42"


async def test_zoom_endpoint_url_validation(gw):
    body = json.dumps({"payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}, "event_ts": 1654503849680,
                       "event": "endpoint.url_validation"}).encode()  # fmt: skip
    resp = await gw.client.post(
        gw.url("zoom"), data=body, headers={**JSON, **zoom_sign(ZOOM_SECRET, body, int(time.time()))}
    )
    expected = hmac.new(ZOOM_SECRET.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
    assert (resp.status, await resp.json()) == (
        200,
        {"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected},
    )
    assert gw.upstream.events == []


async def test_zoom_answers_with_the_secret_that_verified(make_gateway):
    gateway = await make_gateway(providers={"zoom": {"secrets": ["new-zoom-token", ZOOM_SECRET]}})
    body = b'{"payload":{"plainToken":"abc"},"event":"endpoint.url_validation"}'
    resp = await gateway.client.post(
        gateway.url("zoom"), data=body, headers={**JSON, **zoom_sign(ZOOM_SECRET, body, int(time.time()))}
    )
    assert (await resp.json())["encryptedToken"] == hmac.new(ZOOM_SECRET.encode(), b"abc", hashlib.sha256).hexdigest()


@pytest.mark.parametrize("payload", [{}, {"plainToken": ""}, {"plainToken": 5}, None])
async def test_zoom_validation_without_a_token_is_400(gw, payload):
    body = json.dumps({"payload": payload, "event": "endpoint.url_validation"}).encode()
    resp = await gw.client.post(
        gw.url("zoom"), data=body, headers={**JSON, **zoom_sign(ZOOM_SECRET, body, int(time.time()))}
    )
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_body")


async def test_zoom_unsigned_validation_is_never_answered(gw):
    """Answering would hand out HMACs, with our secret, of any value: a signing oracle."""
    body = b'{"payload":{"plainToken":"v0:1700000000:{}"},"event":"endpoint.url_validation"}'
    resp = await gw.client.post(
        gw.url("zoom"), data=body, headers={**JSON, **zoom_sign("guess", body, int(time.time()))}
    )
    assert resp.status == 401
    assert "encryptedToken" not in await resp.text()


async def test_twitch_callback_verification(gw):
    challenge = "pogchamp-kappa-360noscope-vohiyo"
    body = json.dumps({"challenge": challenge, "subscription": {"id": "f1c2a387", "type": "channel.follow",
                       "version": "2", "status": "webhook_callback_verification_pending"}}).encode()  # fmt: skip
    headers = {**JSON, "Twitch-Eventsub-Message-Type": "webhook_callback_verification",
               **twitch_sign(TWITCH_SECRET, body, int(time.time()))}  # fmt: skip
    resp = await gw.client.post(gw.url("twitch"), data=body, headers=headers)
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.read() == challenge.encode()
    assert gw.upstream.events == []


async def test_twitch_notifications_and_revocations_are_forwarded(gw):
    body = b'{"subscription":{"type":"channel.follow"},"event":{"user_id":"1"}}'
    for kind in ("notification", "revocation"):
        headers = {**JSON, "Twitch-Eventsub-Message-Type": kind, "Twitch-Eventsub-Subscription-Type": "channel.follow",
                   **twitch_sign(TWITCH_SECRET, body, int(time.time()), msg_id=f"msg-{kind}")}  # fmt: skip
        resp = await gw.client.post(gw.url("twitch"), data=body, headers=headers)
        assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")
    assert len(gw.upstream.events) == 2


async def test_discord_ping(gw):
    body = b'{"application_id":"1100000000000000000","id":"1200000000000000001","token":"tok","type":1,"version":1}'
    resp = await gw.client.post(
        gw.url("discord"), data=body, headers={**JSON, **discord_sign(DISCORD_SEED, body, int(time.time()))}
    )
    assert (resp.status, await resp.json()) == (200, {"type": 1})
    assert gw.upstream.events == []
    assert handshakes(gw, "discord") == "1.0"


async def test_discord_webhook_events_ping_and_event(gw):
    ping = b'{"version":1,"application_id":"1100000000000000000","type":0}'
    resp = await gw.client.post(
        gw.url("discord"), data=ping, headers={**JSON, **discord_sign(DISCORD_SEED, ping, int(time.time()))}
    )
    assert resp.status == 204 and await resp.read() == b""
    # type 1 with an event is a webhook event, not an interactions PING: forwarded
    event = b'{"version":1,"application_id":"1","type":1,"event":{"type":"APPLICATION_AUTHORIZED","data":{}}}'
    resp = await gw.client.post(
        gw.url("discord"), data=event, headers={**JSON, **discord_sign(DISCORD_SEED, event, int(time.time()))}
    )
    assert (resp.status, (await resp.json())["status"]) == (200, "forwarded")
    assert gw.upstream.events[-1].event["data"]["event_type"] == "APPLICATION_AUTHORIZED"


async def test_discord_type_true_is_not_a_ping(gw):
    body = b'{"id":"5","type":true}'
    resp = await gw.client.post(
        gw.url("discord"), data=body, headers={**JSON, **discord_sign(DISCORD_SEED, body, int(time.time()))}
    )
    assert (await resp.json())["status"] == "forwarded"


def test_handshake_config_errors():
    from gateway.errors import ConfigError
    from gateway.settings.loader import build_settings, load_catalog

    def load(handshake, **entry):
        custom = {
            "secrets": ["s"],
            "signature": {"algorithm": "hmac-sha256", "header": "X-Sig"},
            "handshake": handshake,
        }
        data = {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"custom": {**custom, **entry}}}
        return build_settings("t.yaml", data, load_catalog(), {})

    for bad, message in [
        ({"when": {"json": "type", "equals": "x"}}, "exactly one of reply or responder"),
        ({"when": {"json": "type"}, "reply": {"json": {}}}, "exactly one of equals or absent"),
        ({"when": [], "reply": {"json": {}}}, "is required"),
        ({"when": {"json": "type", "equals": 1}, "responder": "nope"}, "unknown responder"),
        ({"when": {"json": "type", "equals": 1}, "reply": {"status": 302}}, "2xx"),
        ({"when": {"json": "type", "equals": 1}, "reply": {"json": {}, "text": "x"}}, "not both"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load(bad)
    with pytest.raises(ConfigError, match="configure secrets"):
        zoom = {"when": {"json": "event", "equals": "x"}, "responder": "zoom_url_validation"}
        load(zoom, secrets=[], allow_unsigned=True, signature=None)
