"""Queue mode through the whole app: Redis for dedup, PostgreSQL for the outbox, a real upstream.

A 202 means the event is committed; delivery happens in the background with retries (backoff,
the upstream's Retry-After), dead letters after ``max_attempts``, replay and purge through the
management API; what is stored is redacted while the upstream gets the full payload. When
PostgreSQL goes away (a TCP proxy we cut), webhooks get 503 (never a 4xx) and readiness fails;
when it is back the gateway recovers by itself and the provider's retry is accepted.
"""

from __future__ import annotations

import asyncio
import json
import time

import helpers_services as hs
import pytest

from gateway.app_state import SERVICES

pg_database, pg_dsn, redis_state = hs.pg_database, hs.pg_dsn, hs.redis_state  # fixtures

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "poll_interval": 0.05, "max_attempts": 3, "lease": 5}


@pytest.fixture
def queue_gateway(make_gateway, pg_dsn, redis_state):
    """``await queue_gateway(**overrides)``: a queue-mode gateway on this test's Redis prefix and
    database; ``queue`` overrides the fast retry settings."""

    async def make(queue=None, events=None, upstream=None, **overrides):
        return await make_gateway(
            upstream={"mode": "queue", "queue": {**FAST, **(queue or {})}, **(upstream or {})},
            state=redis_state,
            events={"url": pg_dsn, "timeout": 1.0, **(events or {})},
            **overrides,
        )

    return make


async def row(dsn: str, event_id: str):
    rows = await hs.pg_fetch(dsn, "SELECT * FROM webhook_events WHERE event_id = $1", event_id)
    return rows[0] if rows else None


async def status_is(dsn: str, event_id: str, status: str) -> bool:
    r = await row(dsn, event_id)
    return r is not None and r["status"] == status


async def all_delivered(dsn: str, event_ids: list[str]) -> bool:
    rows = await hs.pg_fetch(
        dsn, "SELECT count(*) AS n FROM webhook_events WHERE event_id = ANY($1) AND status = 'delivered'", event_ids
    )
    return rows[0]["n"] == len(event_ids)


async def api(gw, method: str, path: str, **kw):
    """A management call with the gateway's own API key."""
    key = gw.settings.api_keys[0].reveal().decode()
    resp = await gw.client.request(method, path, headers={"X-API-Key": key}, **kw)
    return resp.status, await resp.json()


# --------------------------------------------------------------------------- happy path


async def test_202_only_after_the_event_is_committed(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway()
    gw.upstream.delay = 0.3  # delivery is still running when we look
    data = await gw.expect(202, "stripe", kit.stripe_body("evt_q1"))
    assert data == {"success": True, "status": "queued", "event_id": "evt_q1"}
    stored = await row(pg_dsn, "evt_q1")  # on another connection: committed, not just written
    assert stored is not None and stored["status"] in ("queued", "delivering")
    await hs.eventually(lambda: gw.upstream.ids() == ["evt_q1"])
    await hs.eventually(lambda: status_is(pg_dsn, "evt_q1", "delivered"))
    delivered = await row(pg_dsn, "evt_q1")
    assert delivered["attempts"] == 1 and delivered["delivered_at"] is not None


async def test_every_event_reaches_the_upstream_once(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway()
    ids = [f"evt_many_{i}" for i in range(40)]
    answers = await asyncio.gather(*(gw.post("stripe", kit.stripe_body(i)) for i in ids))
    assert [a.status for a in answers] == [202] * 40
    await hs.eventually(lambda: sorted(gw.upstream.ids()) == sorted(ids))

    async def all_delivered():
        rows = await hs.pg_fetch(pg_dsn, "SELECT status, count(*) AS n FROM webhook_events GROUP BY status")
        return {r["status"]: r["n"] for r in rows} == {"delivered": 40}

    await hs.eventually(all_delivered)
    assert len(gw.upstream.events) == 40


async def test_a_copy_is_a_duplicate_and_is_not_delivered_twice(queue_gateway, kit):
    gw = await queue_gateway()
    body = kit.stripe_body("evt_dup")
    await gw.expect(202, "stripe", body)
    await hs.eventually(lambda: gw.upstream.ids() == ["evt_dup"])
    assert (await gw.expect(200, "stripe", body))["status"] == "duplicate"
    # Nothing is left to deliver (no queued or delivering row): a second delivery cannot come.
    await hs.eventually(lambda: nothing_queued(gw.settings.events.url))
    assert gw.upstream.ids() == ["evt_dup"]
    rows = await hs.pg_fetch(gw.settings.events.url, "SELECT status FROM webhook_events WHERE event_id = 'evt_dup'")
    assert [r["status"] for r in rows] == ["delivered"]


async def nothing_queued(dsn: str) -> bool:
    rows = await hs.pg_fetch(dsn, "SELECT count(*) AS n FROM webhook_events WHERE status IN ('queued', 'delivering')")
    return rows[0]["n"] == 0


async def test_a_copy_that_outlived_the_dedup_store_is_caught_by_the_table(queue_gateway, kit, redis_state):
    import redis.asyncio as aioredis

    gw = await queue_gateway()
    body = kit.stripe_body("evt_table_dup")
    await gw.expect(202, "stripe", body)
    client = aioredis.Redis.from_url(redis_state["url"])
    await client.delete(f"{redis_state['key_prefix']}dd:{{stripe}}:evt_table_dup")  # dedup TTL ran out
    await client.aclose()
    assert (await gw.expect(200, "stripe", body))["status"] == "duplicate"
    await hs.eventually(lambda: gw.upstream.ids() == ["evt_table_dup"])


async def test_an_id_the_database_cannot_hold_is_stored_escaped_beside_the_others(queue_gateway, kit, pg_dsn):
    # A 400 here would be final for the provider: the event would be lost (issue 13).
    gw = await queue_gateway()
    bad = kit.stripe_body("evt_nul\x00x")
    answers = await asyncio.gather(
        *(gw.post("stripe", b) for b in (kit.stripe_body("evt_ok_a"), bad, kit.stripe_body("evt_ok_b")))
    )
    bodies = [await a.json() for a in answers]
    assert [a.status for a in answers] == [202, 202, 202], bodies
    await hs.eventually(lambda: sorted(gw.upstream.ids()) == ["evt_nul\x00x", "evt_ok_a", "evt_ok_b"])
    await hs.eventually(lambda: status_is(pg_dsn, "evt_nul\\x00x", "delivered"))


async def test_a_lease_that_runs_out_mid_delivery_costs_no_second_delivery(queue_gateway, kit, pg_dsn):
    """The process re-claims its own event while still delivering it: it keeps the one delivery
    and records it under the newer attempt, instead of having its verdict fenced off."""
    gw = await queue_gateway(queue={"lease": 0.3})
    gw.upstream.then(("slow", 1.0))  # several leases long
    await gw.expect(202, "stripe", kit.stripe_body("evt_slow_lease"))
    await hs.eventually(lambda: status_is(pg_dsn, "evt_slow_lease", "delivered"), timeout=5)
    delivered = await row(pg_dsn, "evt_slow_lease")
    assert delivered["attempts"] > 1  # re-claimed while the upstream was still answering
    await asyncio.sleep(0.6)  # two more leases: nothing is left to deliver again
    assert gw.upstream.ids() == ["evt_slow_lease"] and gw.upstream.attempts == 1


async def test_a_lease_that_runs_out_while_a_failure_is_recorded_is_a_new_delivery(queue_gateway, kit, pg_dsn):
    """The upstream refused the event, and the lease ran out while that verdict was still being
    written: the re-claim delivers the event again at once, under the attempt it counted. Kept as
    part of the finished delivery instead, the re-claim sent nothing, the old verdict was fenced
    off, and the event sat leased for another lease with one attempt counted but never made."""
    gw = await queue_gateway(queue={"lease": 0.3})
    gw.upstream.then(500)  # the first try fails; the next is answered 204
    events = gw.app[SERVICES].events
    gate, retry = asyncio.Event(), events.mark_retry

    async def gated(*args, **kwargs):
        await gate.wait()
        await retry(*args, **kwargs)

    events.mark_retry = gated
    await gw.expect(202, "stripe", kit.stripe_body("evt_fail_lease"))

    async def reclaimed() -> bool:
        r = await row(pg_dsn, "evt_fail_lease")
        return r is not None and r["attempts"] >= 2

    await hs.eventually(reclaimed)
    await hs.eventually(lambda: gw.upstream.ids() == ["evt_fail_lease"])  # sent again, before the verdict
    gate.set()
    await hs.eventually(lambda: status_is(pg_dsn, "evt_fail_lease", "delivered"))
    assert (await row(pg_dsn, "evt_fail_lease"))["attempts"] == 2 and gw.upstream.attempts == 2


async def test_a_commit_slower_than_the_lease_is_not_dispatched_beside_another_replicas_claim(
    queue_gateway, kit, pg_dsn
):
    """Two replicas. One's commit takes longer than the lease it wrote: by then the other has
    claimed the event (its lease ran out) and delivered it. The slow one must not deliver it
    as well on its own lease, now over; it leaves the event to the claims."""
    slow, other = await queue_gateway(queue={"lease": 0.3}), await queue_gateway(queue={"lease": 0.3})
    events = slow.app[SERVICES].events
    insert = events.insert

    async def slow_commit(record):
        stored = await insert(record)
        await hs.eventually(lambda: status_is(pg_dsn, "evt_slow_commit", "delivered"))  # the other's
        return stored

    events.insert = slow_commit
    await slow.expect(202, "stripe", kit.stripe_body("evt_slow_commit"))
    delivery = slow.app[SERVICES].delivery
    await hs.eventually(lambda: delivery._held == 0)  # the slow one's dispatch has settled
    assert slow.upstream.ids() == ["evt_slow_commit"] and slow.upstream.attempts == 1
    assert other.upstream is slow.upstream


def gate_marks(gw) -> tuple[asyncio.Event, list[int]]:
    """Hold every delivered-mark of ``gw``'s event store until the returned gate opens; the list
    names the records whose mark is waiting. The store underneath is the real PostgreSQL one."""
    events = gw.app[SERVICES].events
    gate, waiting = asyncio.Event(), []
    mark = events.mark_delivered

    async def gated(record_id, *args, **kwargs):
        waiting.append(record_id)
        await gate.wait()
        await mark(record_id, *args, **kwargs)

    events.mark_delivered = gated
    return gate, waiting


async def test_recording_verdicts_never_idles_the_upstream(queue_gateway, kit, pg_dsn):
    """One upstream slot, and every verdict's commit held back: the upstream still gets the next
    events. A slot held until the verdict was recorded capped delivery at `concurrency` events
    per commit (in the bench, one worker delivered 13% of what it accepted)."""
    gw = await queue_gateway(queue={"concurrency": 1, "hold": 8})
    gw.upstream.delay = 0.01  # a second request on the wire meanwhile would show in max_concurrent
    gate, waiting = gate_marks(gw)
    ids = [f"evt_wire_{i}" for i in range(4)]
    for event_id in ids:
        await gw.expect(202, "stripe", kit.stripe_body(event_id))
    await hs.eventually(lambda: sorted(gw.upstream.ids()) == ids)
    assert len(waiting) == 4 and gw.upstream.max_concurrent == 1  # one at a time, none recorded yet
    assert 'result="released"' not in gw.metrics_text()  # each sent at once: none waited out its lease
    gate.set()
    await hs.eventually(lambda: all_delivered(pg_dsn, ids))
    assert len(gw.upstream.events) == 4


async def test_hold_bounds_the_events_one_process_has_delivered_but_not_recorded(queue_gateway, kit, pg_dsn):
    """What a kill -9 could deliver twice: never more than `hold` events. The rest wait, stored."""
    gw = await queue_gateway(queue={"concurrency": 2, "hold": 2})
    gate, waiting = gate_marks(gw)
    ids = [f"evt_hold_{i}" for i in range(5)]
    for event_id in ids:
        await gw.expect(202, "stripe", kit.stripe_body(event_id))
    await hs.eventually(lambda: len(waiting) == 2)

    async def statuses():
        rows = await hs.pg_fetch(pg_dsn, "SELECT status, count(*) AS n FROM webhook_events GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    assert await statuses() == {"delivering": 2, "queued": 3}  # the requests past the bound stored it queued
    await asyncio.sleep(0.3)  # six poll intervals: the claim loop had its chances to take more
    assert len(waiting) == 2 and len(gw.upstream.ids()) == 2
    assert await statuses() == {"delivering": 2, "queued": 3}
    gate.set()
    await hs.eventually(lambda: sorted(gw.upstream.ids()) == ids)
    await hs.eventually(lambda: all_delivered(pg_dsn, ids))
    assert len(gw.upstream.events) == 5


async def test_an_event_that_waited_too_long_for_a_slot_is_given_back_untried(queue_gateway, kit, pg_dsn):
    """A forward (bounded by upstream.timeout) started late could outlast the event's lease, and by
    then another worker may have taken the event over: such a send is not made. The event is
    queued again, due at once and its attempt not counted."""
    # A 2 s lease and 1.5 s forwards: each send must start within 0.5 s of its lease's start.
    gw = await queue_gateway(queue={"concurrency": 1, "lease": 2.0}, upstream={"timeout": 1.5})
    gw.upstream.then(("slow", 1.2))  # the first holds the one slot for 1.2 s; the other two wait
    ids = ["evt_wait_0", "evt_wait_1", "evt_wait_2"]
    for event_id in ids:
        await gw.expect(202, "stripe", kit.stripe_body(event_id))
    released = 'webhook_gateway_queue_deliveries_total{provider="stripe",result="released"} 2.0'
    await hs.eventually(lambda: released in gw.metrics_text())
    await hs.eventually(lambda: all_delivered(pg_dsn, ids))  # claimed again at once, sent at once
    assert gw.upstream.attempts == 3 and sorted(gw.upstream.ids()) == ids  # each sent once
    assert [(await row(pg_dsn, i))["attempts"] for i in ids] == [1, 1, 1]  # the give-backs not counted


async def one_on_the_wire_two_waiting(gw, kit, prefix: str) -> tuple[asyncio.Event, list[str]]:
    """Three events accepted by a gateway with one upstream slot: the first on the wire until the
    returned gate opens (answered 204), the other two waiting for the slot."""
    gate = asyncio.Event()
    gw.upstream.then(("gate", gate, 204))
    ids = [f"{prefix}_{i}" for i in range(3)]
    for event_id in ids:
        await gw.expect(202, "stripe", kit.stripe_body(event_id))
    await hs.eventually(lambda: gw.upstream.attempts == 1)
    return gate, ids


async def test_claims_taken_over_while_the_holder_session_was_lost_are_not_sent(queue_gateway, kit, pg_dsn):
    """This process's lease-holder session ends (a failover, a proxy closing idle connections)
    while two events wait for the one upstream slot. Its lock is free until it reconnects, and a
    live replica takes the two over. This process must not send them as well: it gives them back
    (fenced off, since they are the other replica's now) instead of sending on its old claim."""
    import asyncpg

    from gateway.events.holder import NAMESPACE

    gw = await queue_gateway(queue={"concurrency": 1})
    gate, ids = await one_on_the_wire_two_waiting(gw, kit, "evt_epoch")
    holder = gw.app[SERVICES].events._holder
    other = await asyncpg.connect(pg_dsn)  # the other replica's holder session, alive throughout
    try:
        await other.execute("SELECT pg_advisory_lock($1, 4242)", NAMESPACE)
        [session] = await hs.pg_fetch(
            pg_dsn, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid "
            "AND objid = $2::bigint::oid AND objsubid = 2 AND granted", NAMESPACE, holder.token,
        )  # fmt: skip
        await hs.pg_fetch(pg_dsn, "SELECT pg_terminate_backend($1)", session["pid"])
        # The other replica's rescue and claim, while this process's lock is free:
        taken = await hs.pg_fetch(
            pg_dsn, "UPDATE webhook_events SET holder = 4242, attempts = attempts + 1, "
            "locked_until = now() + interval '60 seconds' WHERE event_id = ANY($1) AND status = 'delivering' "
            "RETURNING event_id", ids[1:],
        )  # fmt: skip
        assert sorted(r["event_id"] for r in taken) == ids[1:]
        await hs.eventually(lambda: holder.epoch == 1 and holder.token is not None)  # noticed, reconnected
        gate.set()
        released = 'webhook_gateway_queue_deliveries_total{provider="stripe",result="released"} 2.0'
        await hs.eventually(lambda: released in gw.metrics_text())
        await hs.eventually(lambda: status_is(pg_dsn, "evt_epoch_0", "delivered"))
        assert gw.upstream.attempts == 1  # the gated answer to evt_epoch_0 was the only request
        for event_id in ids[1:]:  # still the other replica's: the give-back was fenced off
            r = await row(pg_dsn, event_id)
            assert (r["status"], r["holder"], r["attempts"]) == ("delivering", 4242, 2)
    finally:
        await other.close()


async def test_stopping_gives_back_what_waits_for_a_slot(queue_gateway, kit, pg_dsn):
    """A rolling deploy: events still waiting for an upstream slot are queued again for the other
    replicas instead of being sent during the grace period (and cancelled on the wire after it)."""
    gw = await queue_gateway(queue={"concurrency": 1})
    gate, ids = await one_on_the_wire_two_waiting(gw, kit, "evt_stop")
    stopping = asyncio.ensure_future(gw.app[SERVICES].delivery.stop(5.0))
    gate.set()  # the one on the wire is answered and recorded; the two behind it are given back
    await stopping
    assert await status_is(pg_dsn, "evt_stop_0", "delivered")
    for event_id in ids[1:]:
        back = await row(pg_dsn, event_id)
        assert (back["status"], back["attempts"], back["locked_until"]) == ("queued", 0, None)
    assert gw.upstream.attempts == 1
    assert 'webhook_gateway_queue_deliveries_total{provider="stripe",result="released"} 2.0' in gw.metrics_text()


async def test_claims_leave_a_backlog_to_the_other_replicas(queue_gateway, kit, pg_dsn):
    """One replica claims only what its upstream slots will soon serve (twice `concurrency`), not
    up to `hold`: the rest of a backlog stays claimable by the others."""
    intake = await queue_gateway(queue={"concurrency": 1, "hold": 1})  # stores all but one queued
    gate = asyncio.Event()
    intake.upstream.then(*[("gate", gate, 204)] * 8)  # nothing is answered until the end
    ids = [f"evt_share_{i}" for i in range(8)]
    for event_id in ids:
        await intake.expect(202, "stripe", kit.stripe_body(event_id))
    other = await queue_gateway(queue={"concurrency": 2})  # hold 512: room for every one
    await hs.eventually(lambda: other.upstream.attempts >= 3)  # intake's one and two of other's on the wire
    await asyncio.sleep(0.3)  # six poll intervals: its claim loop had its chances to take more

    async def statuses():
        rows = await hs.pg_fetch(pg_dsn, "SELECT status, count(*) AS n FROM webhook_events GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    assert await statuses() == {"delivering": 1 + 4, "queued": 3}  # intake's 1, other's 2 x concurrency
    gate.set()
    await hs.eventually(lambda: all_delivered(pg_dsn, ids))
    assert other.upstream.attempts == 8


# --------------------------------------------------------------------------- retries and dead letters


async def test_an_upstream_500_is_retried_with_backoff_then_delivered(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway()
    gw.upstream.then(500, 500)
    await gw.expect(202, "stripe", kit.stripe_body("evt_retry"))
    await hs.eventually(lambda: status_is(pg_dsn, "evt_retry", "delivered"))
    assert gw.upstream.attempts == 3 and gw.upstream.ids() == ["evt_retry"]
    stored = await row(pg_dsn, "evt_retry")
    assert stored["attempts"] == 3 and stored["last_error"] is None
    assert 'webhook_gateway_queue_deliveries_total{provider="stripe",result="retry"} 2.0' in gw.metrics_text()


async def test_dead_letters_replay_and_purge(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway()
    gw.upstream.then(500, 500, 500)
    await gw.expect(202, "stripe", kit.stripe_body("evt_dead"))
    await hs.eventually(lambda: status_is(pg_dsn, "evt_dead", "dead"))
    assert gw.upstream.attempts == 3 and gw.upstream.ids() == []

    status, body = await api(gw, "GET", f"{kit.API}/dead-letters/")
    assert status == 200
    [dead] = body["events"]
    assert (dead["event_id"], dead["status"], dead["attempts"]) == ("evt_dead", "dead", 3)
    assert dead["last_error"].startswith("upstream_error")

    unauthorized = await gw.client.post(f"{kit.API}/events/{dead['id']}/replay/")
    assert unauthorized.status == 401
    status, body = await api(gw, "POST", f"{kit.API}/events/{dead['id']}/replay/")
    assert (status, body["status"]) == (202, "queued")
    await hs.eventually(lambda: gw.upstream.ids() == ["evt_dead"])  # the upstream is fine now
    await hs.eventually(lambda: status_is(pg_dsn, "evt_dead", "delivered"))
    assert (await api(gw, "GET", f"{kit.API}/dead-letters/"))[1]["events"] == []

    gw.upstream.then(500, 500, 500)
    await gw.expect(202, "stripe", kit.stripe_body("evt_dead_2"))
    await hs.eventually(lambda: status_is(pg_dsn, "evt_dead_2", "dead"))
    # A filter that would not apply is refused, never read as "no filter" (a purge of them all):
    for wrong in ("provder=stripe", "provider=", "limit=1", "status=queued", "provider=stripe&event_id="):
        status, body = await api(gw, "DELETE", f"{kit.API}/dead-letters/?{wrong}")
        assert (status, body["error"]["code"]) == (400, "invalid_parameter"), wrong
    assert await row(pg_dsn, "evt_dead_2") is not None
    status, body = await api(gw, "DELETE", f"{kit.API}/dead-letters/")
    assert (status, body) == (200, {"success": True, "purged": 1})
    assert await row(pg_dsn, "evt_dead_2") is None
    assert (await row(pg_dsn, "evt_dead"))["status"] == "delivered"  # only dead letters go


async def test_management_input_out_of_range_is_a_400_and_no_answer_is_cached(queue_gateway, kit, pg_dsn):
    """Times before year 1 or after 9999 once in UTC, a limit of 10**400, an unknown charset: each
    a 400 naming the input, not a 503 that blames the store nor a 500. No answer is cacheable."""
    gw = await queue_gateway()
    key = {"X-API-Key": gw.settings.api_keys[0].reveal().decode()}
    for query in ("since=0001-01-01T00:00:00%2B01:00", "until=9999-12-31T23:59-01:00"):
        resp = await gw.client.get(f"{kit.API}/events/?{query}", headers=key)
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_parameter", query
        assert resp.headers["Cache-Control"] == "no-store"
    huge = b'{"provider": "github", "limit": 1' + b"0" * 400 + b"}"
    resp = await gw.client.post(f"{kit.API}/events/replay/", data=huge, headers=key)
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_parameter")
    bogus = {**key, "Content-Type": "application/json; charset=bogus"}
    resp = await gw.client.post(f"{kit.API}/events/replay/", data=b'{"provider": "github"}', headers=bogus)
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_body")
    for resp in (await gw.client.get(f"{kit.API}/events/", headers=key), await gw.client.get(f"{kit.API}/events/")):
        assert resp.status in (200, 401) and resp.headers["Cache-Control"] == "no-store"


async def test_a_503_retry_after_is_honoured(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway(queue={"backoff_max": 10})
    gw.upstream.then((503, {"Retry-After": "1"}))
    await gw.expect(202, "stripe", kit.stripe_body("evt_busy"))

    async def retry_scheduled():
        rows = await hs.pg_fetch(
            pg_dsn,
            "SELECT status, last_error, extract(epoch FROM next_attempt_at - received_at) AS due_after "
            "FROM webhook_events WHERE event_id = 'evt_busy'",
        )
        return rows[0] if rows and rows[0]["last_error"] else None

    first = await hs.eventually(retry_scheduled)
    assert first["status"] == "queued" and first["last_error"].startswith("upstream_unavailable")
    # Retry-After: 1, not the 0.05 s backoff: due a second after the failure, so after receipt.
    assert float(first["due_after"]) >= 1.0
    await hs.eventually(lambda: status_is(pg_dsn, "evt_busy", "delivered"))
    done = await hs.pg_fetch(
        pg_dsn, "SELECT extract(epoch FROM delivered_at - received_at) AS took FROM webhook_events"
    )
    assert float(done[0]["took"]) >= 1.0  # the second attempt waited for it
    assert gw.upstream.attempts == 2 and gw.upstream.ids() == ["evt_busy"]


# --------------------------------------------------------------------------- what is stored


async def test_the_store_is_redacted_but_the_upstream_gets_everything(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway(providers={"stripe": {"redact": ["data.object.customer_email"]}})
    doc = json.loads(kit.stripe_body("evt_pii"))
    doc["data"]["object"]["customer_email"] = "jane@example.com"
    await gw.expect(202, "stripe", json.dumps(doc).encode())
    await hs.eventually(lambda: gw.upstream.ids() == ["evt_pii"])
    sent = gw.upstream.events[0].event
    assert sent["data"]["payload"]["data"]["object"]["customer_email"] == "jane@example.com"

    await hs.eventually(lambda: status_is(pg_dsn, "evt_pii", "delivered"))
    stored = await row(pg_dsn, "evt_pii")
    status, body = await api(gw, "GET", f"{kit.API}/events/{stored['id']}/")
    assert status == 200
    shown = body["event"]
    assert json.loads(shown["body"]["text"])["data"]["object"]["customer_email"] == "[REDACTED]"
    assert shown["event"]["data"]["payload"]["data"]["object"]["customer_email"] == "[REDACTED]"
    assert shown["headers"]["Stripe-Signature"] == "[REDACTED]"
    assert b"jane@example.com" not in bytes(stored["body"]) + bytes(stored["event"])
    assert "jane@example.com" not in json.dumps(stored["headers"])


async def test_a_body_redaction_must_re_escape_is_stored_and_its_slot_given_back(queue_gateway, kit, pg_dsn):
    """Slack's `body: any` keeps a form as it came. This form also reads as JSON, with a lone
    surrogate escape that UTF-8 cannot carry once parsed: redaction writes it back escaped. It
    used to raise after the request had reserved a delivery slot, a 500 that kept the slot for
    good (each provider retry one more, until the process claimed nothing)."""
    gw = await queue_gateway(providers={"slack": {"redact": ["token"]}})
    body = b'["=&trigger_id=T1&type=block_actions&z=","\\ud800"]'
    await gw.expect(202, "slack", body, {"Content-Type": "application/x-www-form-urlencoded"})
    await hs.eventually(lambda: status_is(pg_dsn, "T1", "delivered"))
    assert bytes((await row(pg_dsn, "T1"))["body"]) == body  # nothing to mask: the same text
    delivery = gw.app[SERVICES].delivery
    await hs.eventually(lambda: delivery._held == 0)  # the claim loop holds some only while it looks


async def test_management_api_filters_and_pages(queue_gateway, kit, pg_dsn):
    gw = await queue_gateway()
    for i in range(5):
        await gw.expect(
            202,
            "stripe",
            kit.stripe_body(f"evt_list_{i}", etype="charge.failed" if i == 4 else "payment_intent.succeeded"),
        )
    gh = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "gh-delivery-1"}
    await gw.expect(202, "github", b'{"ref":"refs/heads/main"}', gh)
    await hs.eventually(lambda: len(gw.upstream.events) == 6)
    await hs.eventually(lambda: status_is(pg_dsn, "gh-delivery-1", "delivered"))

    async def listed(query: str) -> list[str]:
        status, body = await api(gw, "GET", f"{kit.API}/events/?{query}")
        assert status == 200, body
        return [e["event_id"] for e in body["events"]]

    assert await listed("provider=github") == ["gh-delivery-1"]
    assert await listed("event_type=charge.failed") == ["evt_list_4"]
    assert await listed("event_id=evt_list_2") == ["evt_list_2"]
    assert len(await listed("status=delivered")) == 6
    assert await listed("status=dead") == []
    _, first = await api(gw, "GET", f"{kit.API}/events/?provider=stripe&limit=3")
    _, second = await api(gw, "GET", f"{kit.API}/events/?provider=stripe&limit=3&before_id={first['next_before_id']}")
    walked = [e["event_id"] for e in first["events"] + second["events"]]
    assert walked == [f"evt_list_{i}" for i in range(4, -1, -1)]
    # JSON Schema's `integer` (the spec's type) holds 3.0: a query tool may send it that way
    page = f"{kit.API}/events/?provider=stripe&limit=3.0&before_id={first['next_before_id']}.0"
    _, whole = await api(gw, "GET", page)
    assert [e["event_id"] for e in whole["events"]] == walked[3:]
    for bad in ("status=bogus", "limit=0", "since=yesterday", "before_id=-1", "limit=2.5", "before_id=1e3"):
        status, body = await api(gw, "GET", f"{kit.API}/events/?{bad}")
        assert (status, body["error"]["code"]) == (400, "invalid_parameter"), bad
    assert (await gw.client.get(f"{kit.API}/events/")).status == 401


# --------------------------------------------------------------------------- PostgreSQL down


@pytest.mark.parametrize("outage", ["cut", "freeze"])
async def test_postgres_down_is_503_and_not_ready_then_recovers(queue_gateway, kit, pg_dsn, outage):
    """``cut``: PostgreSQL is gone (connections refused). ``freeze``: a partition (connections
    open, nothing answers), bounded by ``events.timeout``."""
    host_port = pg_dsn.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = await hs.TcpProxy(host, int(port)).start()
    gw = await queue_gateway(events={"url": pg_dsn.replace(host_port, f"127.0.0.1:{proxy.port}")})
    try:
        await gw.expect(202, "stripe", kit.stripe_body("evt_before"))
        await hs.eventually(lambda: gw.upstream.ids() == ["evt_before"])
        assert (await gw.client.get("/readyz")).status == 200

        await (proxy.cut() if outage == "cut" else proxy.freeze())
        body = kit.stripe_body("evt_outage")
        started = time.monotonic()
        resp = await gw.post("stripe", body)
        data = await resp.json()
        assert resp.status == 503, data
        assert time.monotonic() - started < 2 * 1.0 + 0.5  # events.timeout bounds the wait
        assert data["error"]["code"] == "store_unavailable"
        assert int(resp.headers["Retry-After"]) > 0
        ready = await gw.client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["events"] is False
        await asyncio.sleep(0.3)  # the delivery loop keeps polling a dead store without dying

        await proxy.restore()

        async def ready_again():
            return (await gw.client.get("/readyz")).status == 200

        await hs.eventually(ready_again, timeout=10)
        data = await gw.expect(202, "stripe", body)  # the provider's retry: the claim was released
        assert data["status"] == "queued"
        await hs.eventually(lambda: gw.upstream.ids() == ["evt_before", "evt_outage"])
        await hs.eventually(lambda: status_is(pg_dsn, "evt_outage", "delivered"))
    finally:
        await proxy.cut()


async def test_postgres_unreachable_from_the_start_is_503_never_4xx(queue_gateway, kit):
    gw = await queue_gateway(events={"url": f"postgresql://postgres@127.0.0.1:{kit.free_port()}/test"})
    resp = await gw.post("stripe", kit.stripe_body("evt_nodb"))
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "store_unavailable"
    assert (await gw.client.get("/readyz")).status == 503
    resp = await gw.post("stripe", kit.stripe_body("evt_nodb"))  # and again: the id was not burned
    assert resp.status == 503
