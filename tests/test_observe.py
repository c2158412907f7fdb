"""The live feed of answered webhooks (gateway/observe.py), through a real gateway and upstream."""

from __future__ import annotations

import json

from gateway.app_state import SERVICES
from gateway.observe import EventFeed, Observed


async def test_a_subscriber_sees_every_outcome_with_its_details(gateway, kit, upstream):
    feed = gateway.app[SERVICES].feed
    with feed.subscribe() as sub:
        await gateway.deliver_ok("stripe", kit.stripe_body("evt_obs_1"))
        await gateway.expect(200, "stripe", kit.stripe_body("evt_obs_1"))  # duplicate
        await gateway.expect(401, "stripe", kit.stripe_body("evt_obs_2"), signed=False)
        upstream.then(500)
        await gateway.expect(502, "stripe", kit.stripe_body("evt_obs_3"))
        seen = [await sub.get() for _ in range(4)]
    assert feed.subscribers == []
    ok, dup, unsigned, failed = seen
    assert (ok.provider, ok.event_type, ok.event_id, ok.outcome) == (
        "stripe", "payment_intent.succeeded", "evt_obs_1", "forwarded",
    )  # fmt: skip
    assert (ok.status, ok.upstream_status, ok.verified, ok.reason) == (200, 204, True, "")
    assert json.loads(ok.event) == upstream.events[0].event and ok.latency_ms > 0
    assert (dup.outcome, dup.status, dup.upstream_status, dup.event) == ("duplicate", 200, None, b"")
    assert (unsigned.outcome, unsigned.status, unsigned.verified) == ("missing_signature", 401, False)
    assert unsigned.reason == "the Stripe-Signature header is missing" and unsigned.event_id == ""
    assert (failed.outcome, failed.status, failed.upstream_status) == ("upstream_error", 502, None)
    assert "HTTP 500" in failed.reason and failed.event_id == "evt_obs_3"
    for record in seen:  # nothing secret, ever
        assert not any(secret in repr(record) for secret in kit.ALL_SECRETS)


async def test_nothing_is_built_without_a_subscriber(gateway, kit, monkeypatch):
    built: list[Observed] = []
    monkeypatch.setattr(EventFeed, "publish", lambda self, seen: built.append(seen))
    await gateway.deliver_ok("stripe", kit.stripe_body("evt_obs_none"))
    assert built == []
    with gateway.app[SERVICES].feed.subscribe():
        await gateway.deliver_ok("stripe", kit.stripe_body("evt_obs_one"))
    assert [b.event_id for b in built] == ["evt_obs_one"]


async def test_a_full_queue_drops_for_that_reader_only(gateway, kit):
    feed = gateway.app[SERVICES].feed
    with feed.subscribe(maxsize=2) as slow, feed.subscribe(maxsize=10) as fast:
        for i in range(5):
            await gateway.deliver_ok("stripe", kit.stripe_body(f"evt_drop_{i}"))
        assert slow.dropped == 3 and fast.dropped == 0
        assert [(await slow.get()).event_id for _ in range(2)] == ["evt_drop_0", "evt_drop_1"]
        got = []
        async for seen in fast:
            got.append(seen.event_id)
            if len(got) == 5:
                break
        assert got == [f"evt_drop_{i}" for i in range(5)]


async def test_a_handshake_is_observed_as_one(gateway):
    with gateway.app[SERVICES].feed.subscribe() as sub:
        body = json.dumps({"type": "url_verification", "challenge": "c-4711", "token": "t"}).encode()
        assert (await gateway.expect(200, "slack", body)) == {"challenge": "c-4711"}
        seen = await sub.get()
    assert (seen.provider, seen.outcome, seen.status, seen.verified, seen.event) == (
        "slack", "handshake", 200, True, b"",
    )  # fmt: skip
