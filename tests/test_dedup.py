"""Dedup never loses a webhook: claim before forwarding, commit after success, release on failure."""

from __future__ import annotations

import asyncio
import json

from helpers_services import eventually

EVENT = "evt_dedup_1"


async def test_a_copy_after_success_is_a_duplicate(gateway, kit):
    body = kit.stripe_body(EVENT)
    await gateway.deliver_ok("stripe", body)
    data = await gateway.expect(200, "stripe", body)
    assert data == {"success": True, "status": "duplicate", "event_id": EVENT}
    assert gateway.upstream.ids() == [EVENT]
    assert 'webhook_gateway_dedup_hits_total{provider="stripe"} 1.0' in gateway.metrics_text()


async def test_the_id_is_per_provider(gateway, kit):
    await gateway.deliver_ok("stripe", kit.stripe_body("same-id"))
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "same-id"}
    await gateway.deliver_ok("github", b'{"ref":"refs/heads/main"}', headers)


async def test_a_body_without_an_id_dedups_on_its_hash(gateway, kit):
    body = b'{"payment_id":1,"payment_status":"finished","price_amount":1,"price_currency":"usd"}'
    await gateway.deliver_ok("nowpayments", body)
    data = await gateway.expect(200, "nowpayments", body)
    assert data["status"] == "duplicate"
    await gateway.deliver_ok("nowpayments", body.replace(b"finished", b"refunded"))


async def test_unsigned_copies_cannot_burn_an_event_id(gateway, kit):
    body = kit.stripe_body(EVENT)
    for _ in range(3):
        resp = await gateway.post("stripe", body, {"Stripe-Signature": "t=1,v1=00"}, signed=False)
        assert resp.status == 401
    await gateway.deliver_ok("stripe", body)


async def test_concurrent_copies_forward_exactly_once(make_gateway, kit):
    gw = await make_gateway(dedup={"inflight_wait": 0.05})
    gw.upstream.delay = 0.3
    body = kit.stripe_body(EVENT)
    headers = gw.sign("stripe", body)

    async def one():
        resp = await gw.client.post(gw.url("stripe"), data=body, headers=headers)
        return resp.status, resp.headers.get("Retry-After"), await resp.json()

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert gw.upstream.ids() == [EVENT]
    assert gw.upstream.attempts == 1
    forwarded = [r for r in results if r[0] == 200 and r[2]["status"] == "forwarded"]
    in_flight = [r for r in results if r[0] == 409]
    duplicate = [r for r in results if r[0] == 200 and r[2]["status"] == "duplicate"]
    assert len(forwarded) == 1
    assert len(forwarded) + len(in_flight) + len(duplicate) == 50
    assert in_flight, "a short inflight_wait must answer some copies 409"
    for _, retry_after, data in in_flight:
        assert data["error"]["code"] == "in_flight"
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
    # Once the first copy succeeded, a retry of the same event is a duplicate.
    assert (await gw.expect(200, "stripe", body))["status"] == "duplicate"


async def test_concurrent_copies_wait_for_the_first_when_allowed_to(make_gateway, kit):
    gw = await make_gateway(dedup={"inflight_wait": 5})
    gw.upstream.delay = 0.3
    body = kit.stripe_body(EVENT)
    headers = gw.sign("stripe", body)

    async def one():
        resp = await gw.client.post(gw.url("stripe"), data=body, headers=headers)
        return resp.status, (await resp.json())["status"]

    results = await asyncio.gather(*(one() for _ in range(50)))
    assert sorted(results) == [(200, "duplicate")] * 49 + [(200, "forwarded")]
    assert gw.upstream.attempts == 1


async def test_a_copy_waiting_on_a_failed_first_delivers_it(make_gateway, kit):
    gw = await make_gateway(dedup={"inflight_wait": 5})
    gate = asyncio.Event()
    gw.upstream.then(("gate", gate, 500))  # the first delivery fails, when the test says so
    body = kit.stripe_body(EVENT)
    headers = gw.sign("stripe", body)

    async def one():
        resp = await gw.client.post(gw.url("stripe"), data=body, headers=headers)
        return resp.status, await resp.json()

    first_task = asyncio.create_task(one())
    await eventually(lambda: gw.upstream.attempts == 1)  # the first holds the claim, the upstream holds it
    second_task = asyncio.create_task(one())
    await eventually(lambda: "webhook_gateway_in_flight_requests 2.0" in gw.metrics_text())  # the copy is in
    gate.set()
    first, second = await first_task, await second_task
    # The copy waited, saw the claim released, and delivered the event itself: never "duplicate".
    assert first[0] == 502 and first[1]["error"]["code"] == "upstream_error"
    assert second == (200, {"success": True, "status": "forwarded", "event_id": EVENT})
    assert gw.upstream.ids() == [EVENT]


async def test_upstream_failure_releases_the_claim(gateway, kit):
    body = kit.stripe_body(EVENT)
    gateway.upstream.then(500)
    data = await gateway.expect(502, "stripe", body)
    assert data["error"]["code"] == "upstream_error"
    assert gateway.upstream.events == []
    await gateway.deliver_ok("stripe", body)  # the provider's retry goes through
    assert gateway.upstream.attempts == 2
    assert (await gateway.expect(200, "stripe", body))["status"] == "duplicate"


async def test_dedup_ttl_expires(make_gateway, kit):
    gw = await make_gateway(providers={"stripe": {"dedup_ttl": 0.2}})
    body = kit.stripe_body(EVENT)
    await gw.deliver_ok("stripe", body)
    assert (await gw.expect(200, "stripe", body))["status"] == "duplicate"
    await asyncio.sleep(0.3)
    await gw.deliver_ok("stripe", body)


async def test_a_long_event_id_is_hashed(gateway, kit):
    long_id = "evt_" + "x" * 500
    await gateway.deliver_ok("stripe", kit.stripe_body(long_id))
    event = gateway.upstream.events[-1].event
    assert len(event["id"]) == 64
    assert json.loads(gateway.upstream.events[-1].raw)["data"]["payload"]["id"] == long_id


async def test_a_claim_whose_answer_was_lost_does_not_hold_the_retry(gateway, kit):
    """The store ran the claim but its answer never came (a timeout): 503, and the claim it made
    anyway is let go, so the provider's retry is delivered instead of waiting out the lease
    (2 s of in-flight wait, then 409, for a whole lease)."""
    from gateway.app_state import SERVICES
    from gateway.stores import StoreError

    store = gateway.app[SERVICES].store
    claim = store.claim
    lost = []

    async def answer_lost(key, token, lease):
        await claim(key, token, lease)
        if not lost:
            lost.append(key)
            raise StoreError("redis: TimeoutError")
        return await claim(key, token, lease)

    store.claim = answer_lost
    body = kit.stripe_body("evt_lost_claim")
    assert (await gateway.expect(503, "stripe", body))["error"]["code"] == "store_unavailable"
    await gateway.deliver_ok("stripe", body)  # was: the in-flight wait, then 409
