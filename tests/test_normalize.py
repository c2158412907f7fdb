"""The CloudEvents envelope: one encoder call with the payload spliced in, and the fallback for
text orjson refuses (a lone surrogate, as a header's undecodable bytes arrive) gives the same
document with ASCII escapes."""

from __future__ import annotations

import asyncio
import json

import yaml

from gateway.lean.request import Body, LeanRequest, parse_head
from gateway.pipeline.context import RequestContext
from gateway.pipeline.normalize import Normalize
from gateway.settings.loader import load_config

BODY = (
    b'{"id":"evt_1","type":"payment_intent.succeeded",'
    b'"data":{"object":{"id":"pi_1","amount":2000,"currency":"eur","status":"succeeded"}}}'
)


def context(tmp_path, event_id: str) -> RequestContext:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        yaml.safe_dump(
            {"upstream": {"url": "http://127.0.0.1:9/"}, "providers": {"stripe": {"secrets": ["whsec_" + "x" * 32]}}}
        )
    )
    provider = load_config(str(path), env={}).providers["stripe"]
    raw = b"POST /payments/api/webhooks/stripe/ HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    head = parse_head(raw, raw.find(b"\r\n\r\n"))
    assert head is not None
    request = LeanRequest(head, Body(BODY, len(BODY)), "127.0.0.1")
    ctx = RequestContext(request=request, started=0.0, provider=provider, body=BODY, secret_index=0)
    ctx.event_id, ctx.event_type = event_id, "payment_intent.succeeded"
    return ctx


def test_the_envelope_is_one_document_with_the_payload_byte_for_byte(tmp_path):
    ctx = context(tmp_path, "evt_1")
    asyncio.run(Normalize()(ctx))
    assert ctx.event.endswith(b',"payload":' + BODY + b"}}")
    event = json.loads(ctx.event)
    assert list(event) == ["specversion", "id", "source", "type", "time", "datacontenttype", "data"]
    assert event["data"]["payment"] == {
        "id": "pi_1", "status": "completed", "provider_status": "succeeded", "amount": "20.00", "currency": "EUR",
    }  # fmt: skip
    assert list(event["data"])[-1] == "payload"


def test_a_lone_surrogate_takes_the_fallback_and_still_makes_valid_json(tmp_path):
    ctx = context(tmp_path, "evt_\udc80")
    asyncio.run(Normalize()(ctx))
    assert b"\\udc80" in ctx.event  # ASCII-escaped by the stdlib, where orjson refuses
    assert ctx.event.endswith(b',"payload":' + BODY + b"}}")
    event = json.loads(ctx.event)
    assert event["id"] == "evt_\udc80" and event["data"]["event_id"] == "evt_\udc80"
    assert event["data"]["payload"] == json.loads(BODY)
    assert list(event) == ["specversion", "id", "source", "type", "time", "datacontenttype", "data"]
