"""Delivery attempts, one row per try on the wire: stored by both event stores, written in the
statements that already run, shown in the API's event detail and the dashboard's timeline.

Against real PostgreSQL and the memory store, through a real loopback upstream: a sync delivery
(and its retry on a dropped connection), a queue delivery that fails twice then succeeds, a dead
letter; then the store contract (order, purge, retention, the memory store's byte bound) and the
snippet's cap and escaping.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dashboard_kit as dk
import helpers_services as hs
import pytest

from gateway.app_state import SERVICES
from gateway.events.attempts import SNIPPET_BYTES, Attempt, Tries, snippet
from gateway.events.base import EventRecord
from gateway.events.memory import MemoryEventStore
from gateway.events.postgres import PostgresEventStore

pg_database, pg_dsn, redis_state = hs.pg_database, hs.pg_dsn, hs.redis_state  # fixtures
ADMIN = dk.ADMIN
QUEUE = {"backoff_base": 0.05, "backoff_max": 0.1, "poll_interval": 0.05, "max_attempts": 3, "lease": 5}


async def detail(gw, kit, record_id: int) -> dict:
    key = gw.settings.api_keys[0].reveal().decode()
    resp = await gw.client.get(f"{kit.API}/events/{record_id}/", headers={"X-API-Key": key})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["event"]


async def stored_id(gw, event_id: str, status: str) -> int:
    events = gw.client.app[SERVICES].events

    async def find():
        rows = [r for r in await events.list(_flt()) if r.event_id == event_id and r.status == status]
        return rows[0].id if rows else None

    return int(await hs.eventually(find))


def _flt():
    from gateway.events.base import EventFilter

    return EventFilter(limit=500)


async def timeline_items(gw, record_id: int) -> list[str]:
    page = await gw.client.get(f"{ADMIN}/webhooks/{record_id}/")
    assert page.status == 200
    text = await page.text()
    assert "not each attempt" not in text
    return [li.split("</li>", 1)[0] for li in text.split("<li ")[1:] if "data-attempt=" in li]


# --------------------------------------------------------------------------- through the app


@pytest.mark.parametrize("store", ["memory", "postgresql"])
async def test_a_sync_delivery_is_one_attempt_shown_in_the_api_and_the_timeline(make_gateway, pg_dsn, kit, store):
    events = {"url": pg_dsn} if store == "postgresql" else {}
    gw = await make_gateway(events=events, **dk.dashboard_overrides())
    assert (await dk.login(gw.client)).status == 303
    await gw.deliver_ok("stripe", kit.stripe_body("evt_sync"))
    record_id = await stored_id(gw, "evt_sync", "delivered")
    [attempt] = (await detail(gw, kit, record_id))["delivery_attempts"]
    assert (attempt["attempt"], attempt["result"], attempt["status"], attempt["error"]) == (1, "success", 204, None)
    assert 0 < attempt["latency_ms"] < 5000 and attempt["response"] == ""
    sent = datetime.fromisoformat(attempt["at"])
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 30
    [item] = await timeline_items(gw, record_id)
    assert "attempt 1: HTTP 204" in item and f"{attempt['latency_ms']:.1f} ms" in item


async def test_a_dropped_connection_and_its_retry_are_two_attempts(make_gateway, pg_dsn, kit):
    gw = await make_gateway(events={"url": pg_dsn})
    gw.upstream.then("reset")  # the first try gets a TCP RST; the forwarder tries again at once
    await gw.deliver_ok("stripe", kit.stripe_body("evt_reset"))
    tries = (await detail(gw, kit, await stored_id(gw, "evt_reset", "delivered")))["delivery_attempts"]
    assert [(t["result"], t["status"]) for t in tries] == [("unreachable", None), ("success", 204)], tries
    assert tries[0]["error"].startswith("upstream_unavailable: ") and tries[0]["at"] <= tries[1]["at"]


async def test_a_queue_delivery_that_fails_twice_then_succeeds_shows_three_attempts(
    make_gateway, pg_dsn, redis_state, kit
):
    gw = await make_gateway(
        upstream={"mode": "queue", "queue": QUEUE}, state=redis_state, events={"url": pg_dsn, "timeout": 1.0},
        **dk.dashboard_overrides(),
    )  # fmt: skip
    assert (await dk.login(gw.client)).status == 303
    gw.upstream.then(500, (503, {"Retry-After": "0"}))
    await gw.expect(202, "stripe", kit.stripe_body("evt_q3"))
    record_id = await stored_id(gw, "evt_q3", "delivered")
    tries = (await detail(gw, kit, record_id))["delivery_attempts"]
    assert [(t["attempt"], t["status"], t["result"]) for t in tries] == [
        (1, 500, "http_5xx"), (2, 503, "http_5xx"), (3, 204, "success"),
    ]  # fmt: skip
    assert [t["at"] for t in tries] == sorted(t["at"] for t in tries)
    assert all(t["latency_ms"] > 0 for t in tries)
    assert json.loads(tries[0]["response"]) == {"error": "scripted"}  # the upstream's own answer
    items = await timeline_items(gw, record_id)
    assert ["HTTP 500" in items[0], "HTTP 503" in items[1], "HTTP 204" in items[2]] == [True] * 3
    assert "{&#34;error&#34;: &#34;scripted&#34;}" in items[0]  # the answer, HTML-escaped
    rows = await hs.pg_fetch(pg_dsn, "SELECT attempt, status FROM webhook_delivery_attempts WHERE record_id = $1 "
                                     "ORDER BY at", record_id)  # fmt: skip
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, 500), (2, 503), (3, 204)]


async def test_a_dead_letter_shows_every_attempt(make_gateway, pg_dsn, redis_state, kit):
    gw = await make_gateway(
        upstream={"mode": "queue", "queue": QUEUE}, state=redis_state, events={"url": pg_dsn, "timeout": 1.0},
        **dk.dashboard_overrides(),
    )  # fmt: skip
    assert (await dk.login(gw.client)).status == 303
    gw.upstream.then(500, 502, 500)
    await gw.expect(202, "stripe", kit.stripe_body("evt_dead"))
    record_id = await stored_id(gw, "evt_dead", "dead")
    tries = (await detail(gw, kit, record_id))["delivery_attempts"]
    assert [(t["attempt"], t["status"]) for t in tries] == [(1, 500), (2, 502), (3, 500)]
    items = await timeline_items(gw, record_id)
    assert len(items) == 3 and all('class="bad"' in i for i in items)
    page = await (await gw.client.get(f"{ADMIN}/webhooks/{record_id}/")).text()
    assert "dead letter: gave up" in page


async def test_the_page_escapes_the_upstreams_answer(make_gateway, kit):
    gw = await make_gateway(**dk.dashboard_overrides())
    assert (await dk.login(gw.client)).status == 303
    await gw.deliver_ok("stripe", kit.stripe_body("evt_esc"))
    record_id = await stored_id(gw, "evt_esc", "delivered")
    store = gw.client.app[SERVICES].events
    hostile = Attempt(datetime.now(UTC), 2, "http_5xx", 3.2, 500, snippet(b"<script>alert(1)</script>\x00\xff"))
    await store.mark_retry(record_id, 1.0, "upstream_error: HTTP 500", tries=[hostile])
    text = await (await gw.client.get(f"{ADMIN}/webhooks/{record_id}/")).text()
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# --------------------------------------------------------------------------- store contract


def rec(event_id: str, tries: list[Attempt] | None = None) -> EventRecord:
    now = datetime.now(UTC)
    return EventRecord(
        provider="stripe", event_id=event_id, event_type="t", received_at=now, status="queued", headers={},
        body=b"{}", event=b"{}", next_attempt_at=now, delivery_attempts=tries or [],
    )  # fmt: skip


def attempt(n: int, status: int | None = 500, age: timedelta = timedelta(0), response: str = "") -> Attempt:
    result = "success" if status == 204 else "unreachable" if status is None else "http_5xx"
    return Attempt(datetime.now(UTC) - age, n, result, 1.5 * n, status, response, None if status else "refused")


@pytest.fixture(params=["memory", "postgresql"])
async def store(request, pg_dsn):
    s = MemoryEventStore() if request.param == "memory" else PostgresEventStore(pg_dsn, timeout=5)
    await s.start()
    yield s
    await s.close()


async def test_the_store_keeps_every_attempt_in_order(store):
    r = rec("evt_c1")
    assert await store.insert(r)
    await store.mark_retry(r.id, 0.0, "upstream_error: HTTP 500", tries=[attempt(1, None), attempt(1)])
    await store.mark_dead(r.id, "upstream_error: HTTP 500", tries=[attempt(2)])
    got = await store.get(r.id)
    assert [(a.number, a.status, a.result) for a in got.delivery_attempts] == [
        (1, None, "unreachable"), (1, 500, "http_5xx"), (2, 500, "http_5xx"),
    ]  # fmt: skip
    assert got.delivery_attempts[0].error == "refused" and got.delivery_attempts[2].latency_ms == 3.0
    assert await store.purge(_flt()) == 1 and await store.get(r.id) is None


async def test_an_audit_copy_carries_its_attempts_in_the_same_write(store):
    r = rec("evt_c2", [attempt(1, None), attempt(1, 204, response='{"ok":true}')])
    r.status = "delivered"
    store.submit(r)

    async def written():
        rows = await store.list(_flt())
        return rows and await store.get(rows[0].id)

    got = await hs.eventually(written)
    assert [a.status for a in got.delivery_attempts] == [None, 204]
    assert got.delivery_attempts[1].response == '{"ok":true}'


async def test_the_delivered_mark_batch_carries_the_attempts(store):
    records = [rec(f"evt_b{i}") for i in range(3)]
    for r in records:
        assert await store.insert(r)
    import asyncio

    await asyncio.gather(*(store.mark_delivered(r.id, None, tries=[attempt(1, 204)]) for r in records))
    for r in records:
        got = await store.get(r.id)
        assert got.status == "delivered" and [a.status for a in got.delivery_attempts] == [204]


async def test_retention_deletes_attempts_by_time(store):
    r = rec("evt_old")
    assert await store.insert(r)
    old, recent = attempt(1, age=timedelta(days=40)), attempt(2, age=timedelta(days=1))
    await store.mark_retry(r.id, 0.0, "x", tries=[old, recent])
    await store.expire(30)  # the event is queued, so it stays; its old attempt goes by its own time
    got = await store.get(r.id)
    assert got is not None and [a.number for a in got.delivery_attempts] == [2]


async def test_postgres_attempts_have_no_foreign_key_and_are_indexed(pg_dsn):
    s = PostgresEventStore(pg_dsn, timeout=5)
    await s.start()
    await s.close()
    fks = await hs.pg_fetch(
        pg_dsn, "SELECT conname FROM pg_constraint WHERE conrelid = 'webhook_delivery_attempts'::regclass "
                "AND contype = 'f'",
    )  # fmt: skip
    assert fks == []
    indexes = {r["indexname"] for r in await hs.pg_fetch(
        pg_dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'webhook_delivery_attempts'")}  # fmt: skip
    assert {"webhook_delivery_attempts_record", "webhook_delivery_attempts_at"} <= indexes
    applied = await hs.pg_fetch(pg_dsn, "SELECT version FROM webhook_gateway_migrations ORDER BY version")
    assert "005_delivery_attempts.sql" in [r["version"] for r in applied]


async def test_the_memory_store_counts_attempts_in_its_byte_bound():
    s = MemoryEventStore(max_bytes=10_000)
    r = rec("evt_m")
    assert s._insert(r)
    before = s.bytes
    await s.mark_retry(r.id, 0.0, "x", tries=[attempt(1, response="x" * 500)])
    assert s.bytes - before >= 500
    for i in range(200):  # more than it keeps per event: the newest stay, the bytes follow
        await s.mark_retry(r.id, 0.0, "x", tries=[attempt(i + 2)])
    got = await s.get(r.id)
    assert got is not None and len(got.delivery_attempts) == 100 and got.delivery_attempts[-1].number == 201
    assert s.bytes == sum(len(e.body) + len(e.event) + 512 + sum(a.size() for a in e.delivery_attempts)
                          for e in s._events.values())  # fmt: skip
    await s.mark_retry(r.id, 0.0, "x", tries=[attempt(999, response="y" * 9000)])  # past the bound
    assert s.bytes <= 10_000 or len(s._events) == 1


def test_the_snippet_is_capped_decoded_and_storable():
    raw = "é".encode() * 400 + b"\x00\xff tail"
    text = snippet(raw)
    assert len(text.encode()) <= SNIPPET_BYTES and "tail" not in text
    assert snippet(b"ok\x00\xffbad") == "ok\\x00\ufffdbad"  # NUL escaped; a broken byte replaced


def test_tries_time_each_post():
    tries = Tries(4)
    tries.begin()
    tries.failed("unreachable", "upstream_unavailable: ConnectionResetError")
    tries.begin()
    tries.answered(200, b"x" * 1000)
    tries.failed("error", "never: no try is open")  # closing twice records nothing
    assert [(a.number, a.result, a.status, len(a.response)) for a in tries.items] == [
        (4, "unreachable", None, 0), (4, "success", 200, SNIPPET_BYTES),
    ]  # fmt: skip


async def test_a_sync_replay_adds_its_attempts_failed_or_not(make_gateway, pg_dsn, kit):
    gw = await make_gateway(events={"url": pg_dsn})
    await gw.deliver_ok("stripe", kit.stripe_body("evt_rp"))
    record_id = await stored_id(gw, "evt_rp", "delivered")
    key = {"X-API-Key": gw.settings.api_keys[0].reveal().decode()}
    gw.upstream.then(500)
    failed = await gw.client.post(f"{kit.API}/events/{record_id}/replay/", headers=key)
    assert failed.status == 502
    ok = await gw.client.post(f"{kit.API}/events/{record_id}/replay/", headers=key)
    assert ok.status == 200
    tries = (await detail(gw, kit, record_id))["delivery_attempts"]
    assert [(t["attempt"], t["status"]) for t in tries] == [(1, 204), (2, 500), (3, 204)]
