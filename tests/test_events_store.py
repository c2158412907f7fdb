"""The event store (audit log, outbox, dead letters) on ``memory://`` and on real PostgreSQL.

One contract, two backends: inserts (group commit on PostgreSQL), the outbox's claim / retry /
dead / delivered life cycle, requeue and purge, filters with keyset pagination, retention. Then
what only PostgreSQL has: ``FOR UPDATE SKIP LOCKED`` between two stores (two replicas), folded
rejection counts in ``stats``, migrations (and the ``migrate`` command), and failure handling
(a closed port, a connection cut and restored, a record the server refuses).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import helpers_services as hs
import pytest

from gateway.errors import StoreError, UnstorableEvent
from gateway.events.attempts import Attempt
from gateway.events.base import EventFilter, EventRecord
from gateway.events.memory import MemoryEventStore
from gateway.events.postgres import PostgresEventStore

pg_database, pg_dsn = hs.pg_database, hs.pg_dsn  # fixtures


def rec(event_id: str, provider: str = "stripe", *, status: str = "queued", etype: str = "payment.ok",
        age: timedelta = timedelta(0)) -> EventRecord:  # fmt: skip
    now = datetime.now(UTC) - age
    return EventRecord(
        provider=provider,
        event_id=event_id,
        event_type=etype,
        received_at=now,
        status=status,
        headers={"Content-Type": "application/json"},
        body=json.dumps({"id": event_id}).encode(),
        event=json.dumps({"id": event_id}).encode(),
        client_ip="203.0.113.9",
        next_attempt_at=now if status == "queued" else None,
        delivered_at=now if status == "delivered" else None,
    )


@pytest.fixture(params=["memory", "postgresql"])
async def events(request, pg_dsn):
    if request.param == "memory":
        store = MemoryEventStore("memory://", max_events=10_000)
    else:
        store = PostgresEventStore(pg_dsn, timeout=5)
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def pg_events(pg_dsn):
    store = PostgresEventStore(pg_dsn, timeout=5)
    await store.start()
    yield store
    await store.close()


async def insert_all(store, records) -> list[int]:
    assert all(await asyncio.gather(*(store.insert(r) for r in records)))
    return [r.id for r in records]


# --------------------------------------------------------------------------- inserts


async def test_200_concurrent_inserts_each_get_an_id_and_duplicates_are_refused(events):
    records = [rec(f"evt_{i}") for i in range(200)]
    copies = [rec(f"evt_{i}") for i in range(0, 200, 10)]  # 20 copies racing their originals
    results = await asyncio.gather(*(events.insert(r) for r in records + copies))
    assert results[:200] == [True] * 200
    assert results[200:] == [False] * 20
    ids = [r.id for r in records]
    assert len(set(ids)) == 200 and min(ids) > 0
    assert await events.insert(rec("evt_5")) is False  # later, too
    assert await events.insert(rec("evt_5", provider="github")) is True  # the id is per provider
    assert len(await events.list(EventFilter(limit=500))) == 201


async def test_two_copies_in_one_batch_store_one_row(events):
    results = await asyncio.gather(events.insert(rec("same")), events.insert(rec("same")), events.insert(rec("other")))
    assert sorted(results) == [False, True, True]
    assert [r.event_id for r in await events.list(EventFilter(event_id="same"))] == ["same"]


async def test_concurrent_inserts_share_round_trips(pg_dsn):
    class Counting(PostgresEventStore):  # a real store that also counts its INSERT statements
        batches: list[int]

        async def _insert(self, recs):
            self.batches.append(len(recs))
            return await super()._insert(recs)

    store = Counting(pg_dsn)
    store.batches = []
    await store.start()
    try:
        await insert_all(store, [rec(f"g{i}") for i in range(200)])
    finally:
        await store.close()
    assert sum(store.batches) == 200
    assert len(store.batches) <= 20, store.batches  # group commit: far fewer statements than events


@pytest.mark.parametrize("bad_id", ["nul\x00id", "surrogate\ud800"])
async def test_a_record_the_server_refuses_does_not_sink_its_batch(pg_events, bad_id):
    results = await asyncio.gather(
        pg_events.insert(rec("ok1")), pg_events.insert(rec(bad_id)), pg_events.insert(rec("ok2")),
        return_exceptions=True,
    )  # fmt: skip
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], UnstorableEvent)
    assert await pg_events.insert(rec("after")) is True  # the writer lives on
    assert {r.event_id for r in await pg_events.list(EventFilter())} == {"ok1", "ok2", "after"}


# --------------------------------------------------------------------------- the outbox


@pytest.mark.parametrize("at", [
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before 1970: negative microseconds
    datetime(2026, 12, 3, 21, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 12, 3, 22, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1))),  # another offset
    datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),  # past 2**53 microseconds
])  # fmt: skip
async def test_times_are_stored_to_the_microsecond(pg_events, at):
    """The insert, the delivered-mark and the tries bind times as microseconds since 1970: every
    time comes back exactly, and the mark finds its row by it."""
    r = rec(f"at_{at.year}_{at.microsecond}", status="delivering")
    r.received_at, r.attempts, r.locked_until = at, 1, at + timedelta(seconds=30)
    r.next_attempt_at = at - timedelta(microseconds=1)
    assert await pg_events.insert(r) is True
    [row] = await hs.pg_fetch(pg_events.url, "SELECT locked_until, next_attempt_at FROM webhook_events WHERE id = $1",
                              r.id)  # fmt: skip
    assert (row["locked_until"], row["next_attempt_at"]) == (r.locked_until, r.next_attempt_at)
    tried = Attempt(at=at + timedelta(microseconds=7), number=1, result="delivered", latency_ms=1.5, status=204)
    await pg_events.mark_delivered(r.id, attempt=1, tries=[tried], received_at=at)
    stored = await pg_events.get(r.id)
    assert stored is not None and stored.status == "delivered"
    assert stored.received_at == at
    assert [a.at for a in stored.delivery_attempts] == [at + timedelta(microseconds=7)]
    audit = rec(f"audit_{at.year}_{at.microsecond}", status="delivered")
    audit.received_at = audit.delivered_at = at
    audit.delivery_attempts = [tried]
    assert await pg_events.insert(audit) is True  # sync mode's audit copy, with its tries
    stored = await pg_events.get(audit.id)
    assert stored is not None and (stored.received_at, stored.delivered_at) == (at, at)
    assert [a.at for a in stored.delivery_attempts] == [at + timedelta(microseconds=7)]


async def test_claim_retry_dead_and_delivered(events):
    a, b, c = rec("a"), rec("b"), rec("c")
    await insert_all(events, [a, b, c])
    claimed = await events.claim_due(10, lease=30)
    assert sorted(r.event_id for r in claimed) == ["a", "b", "c"]
    assert all(r.status == "delivering" and r.attempts == 1 for r in claimed)
    assert await events.claim_due(10, lease=30) == []  # leased: nobody else gets them

    await events.mark_retry(a.id, 0.6, "upstream_error: HTTP 500")
    await events.mark_dead(b.id, "upstream_error: HTTP 500")
    await events.mark_delivered(c.id, b'{"redacted":true}')
    got_a, got_b, got_c = [await events.get(i) for i in (a.id, b.id, c.id)]
    assert (got_a.status, got_a.last_error) == ("queued", "upstream_error: HTTP 500")
    due_in = (got_a.next_attempt_at - datetime.now(UTC)).total_seconds()
    assert 0 < due_in <= 0.6
    assert (got_b.status, got_b.next_attempt_at) == ("dead", None)
    assert got_c.status == "delivered" and got_c.delivered_at is not None and got_c.last_error is None
    assert got_c.event == b'{"redacted":true}'

    assert await events.claim_due(10, lease=30) == []  # a is not due yet; dead and delivered never
    await asyncio.sleep(due_in + 0.05)
    again = await events.claim_due(10, lease=30)
    assert [(r.event_id, r.attempts) for r in again] == [("a", 2)]


async def test_an_expired_lease_is_claimed_again(events):
    await insert_all(events, [rec("lease")])
    assert len(await events.claim_due(10, lease=0.5)) == 1
    assert await events.claim_due(10, lease=0.5) == []
    await asyncio.sleep(0.6)  # the worker died: its claim runs out
    again = await events.claim_due(10, lease=30)
    assert [(r.event_id, r.attempts, r.status) for r in again] == [("lease", 2, "delivering")]


async def test_a_given_back_event_is_due_at_once_and_its_attempt_not_counted(events):
    """``release``: a worker that waited too long to send a leased event gives it back untried."""
    await insert_all(events, [rec("back")])
    [claimed] = await events.claim_due(10, lease=30)
    assert claimed.attempts == 1
    await events.release(claimed.id, attempt=7, received_at=claimed.received_at)  # fenced: not that attempt
    assert (await events.get(claimed.id)).status == "delivering"
    await events.release(claimed.id, attempt=1, received_at=claimed.received_at)
    back = await events.get(claimed.id)
    assert (back.status, back.attempts, back.locked_until) == ("queued", 0, None)
    [again] = await events.claim_due(10, lease=30)  # due at once
    assert (again.id, again.attempts) == (claimed.id, 1)


async def test_requeue_and_purge(events):
    records = [rec(f"r{i}") for i in range(4)]
    await insert_all(events, records)
    await events.claim_due(10, lease=30)
    for r in records[:3]:
        await events.mark_dead(r.id, "gave up")
    assert await events.requeue(EventFilter(status="dead"), [records[0].id]) == 1  # one, by id
    assert await events.requeue(EventFilter(status="dead")) == 2  # the other dead ones
    assert await events.requeue(EventFilter()) == 3  # everything not leased: r3 stays with its worker
    assert (await events.get(records[3].id)).status == "delivering"
    back = await events.get(records[0].id)
    assert (back.status, back.attempts) == ("queued", 0)
    assert {r.event_id for r in await events.claim_due(10, lease=30)} == {"r0", "r1", "r2"}
    for r in records[:2]:
        await events.mark_dead(r.id, "gave up again")
    assert await events.purge(EventFilter(status="dead")) == 2
    assert {r.event_id for r in await events.list(EventFilter())} == {"r2", "r3"}
    assert await events.insert(rec("r0")) is True  # a purged id can be stored anew


async def test_two_claimers_never_get_the_same_event(events, request):
    await insert_all(events, [rec(f"c{i}") for i in range(120)])
    other = events
    if isinstance(events, PostgresEventStore):  # a second replica: its own pool and connections
        other = PostgresEventStore(events.url, migrate=False)
        await other.start()
    seen: list[list[str]] = [[], []]

    async def drain(store, out):
        while batch := await store.claim_due(7, lease=30):
            out.extend(r.event_id for r in batch)
            await asyncio.sleep(0)

    try:
        await asyncio.gather(drain(events, seen[0]), drain(other, seen[1]), drain(events, seen[0]))
    finally:
        if other is not events:
            await other.close()
    assert len(seen[0]) + len(seen[1]) == 120
    assert set(seen[0]).isdisjoint(seen[1])
    assert set(seen[0]) | set(seen[1]) == {f"c{i}" for i in range(120)}


# --------------------------------------------------------------------------- management


async def test_list_filters(events):
    await insert_all(events, [
        rec("s1", etype="payment_intent.succeeded"), rec("s2", etype="charge.failed"),
        rec("g1", "github", etype="push"), rec("old", age=timedelta(hours=2)),
    ])  # fmt: skip
    claimed = await events.claim_due(1, lease=30)
    await events.mark_dead(claimed[0].id, "x")

    async def ids(**kw):
        return sorted(r.event_id for r in await events.list(EventFilter(**kw)))

    assert await ids(provider="github") == ["g1"]
    assert await ids(provider="stripe") == ["old", "s1", "s2"]
    assert await ids(event_type="charge.failed") == ["s2"]
    assert await ids(event_id="s1") == ["s1"]
    assert await ids(status="dead") == [claimed[0].event_id]
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert await ids(since=hour_ago) == ["g1", "s1", "s2"]
    assert await ids(until=hour_ago) == ["old"]
    assert await ids(provider="stripe", since=hour_ago, event_type="payment_intent.succeeded") == ["s1"]


async def test_keyset_pagination_walks_every_event_once(events):
    ids = await insert_all(events, [rec(f"p{i:02d}") for i in range(25)])
    pages, before = [], None
    while True:
        page = await events.list(EventFilter(limit=7, before_id=before))
        if not page:
            break
        pages.append([r.id for r in page])
        before = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    walked = [i for p in pages for i in p]
    assert walked == sorted(ids, reverse=True)  # newest first, no gaps, no repeats


async def test_retention_expires_only_finished_old_events(events):
    await insert_all(events, [
        rec("old-delivered", status="delivered", age=timedelta(days=40)),
        rec("old-queued", age=timedelta(days=40)),
        rec("new-delivered", status="delivered"),
    ])  # fmt: skip
    old_dead = rec("old-dead", age=timedelta(days=40))
    await insert_all(events, [old_dead])
    await events.mark_dead(old_dead.id, "gave up")
    assert await events.expire(30) == 2
    assert sorted(r.event_id for r in await events.list(EventFilter())) == ["new-delivered", "old-queued"]


# --------------------------------------------------------------------------- PostgreSQL only


async def test_stats_count_events_and_folded_rejections(pg_events, pg_dsn):
    delivered = [rec(f"d{i}", status="delivered") for i in range(3)]
    queued = [rec(f"q{i}") for i in range(3)]
    await insert_all(pg_events, delivered + queued + [rec("gh", "github", status="delivered")])
    claimed = await pg_events.claim_due(1, lease=30)
    await pg_events.mark_dead(claimed[0].id, "gave up")
    for _ in range(4):
        pg_events.record_rejection("stripe", "198.51.100.7", "invalid_signature")
    pg_events.record_rejection("stripe", "198.51.100.7", "duplicate")
    pg_events.record_rejection("github", "198.51.100.8", "rate_limited")

    async def folded():
        rows = await hs.pg_fetch(pg_dsn, "SELECT coalesce(sum(count), 0) AS n FROM webhook_rejections")
        return rows[0]["n"] == 6

    await hs.eventually(folded, timeout=3.0)  # flushed within about a second
    stats = await pg_events.stats(1)
    assert stats["source"] == "postgresql"
    totals = stats["totals"]
    assert totals["received"] == 13
    assert totals["accepted"] == 7  # 4 delivered, 2 still queued, 1 dead (it was accepted)
    assert totals["duplicates"] == 1
    assert totals["rejected"] == 4 + 1
    assert totals["outcomes"] == {"forwarded": 4, "queued": 2, "dead": 1, "invalid_signature": 4,
                                  "duplicate": 1, "rate_limited": 1}  # fmt: skip
    assert stats["providers"]["github"]["received"] == 2
    assert stats["daily"][-1]["received"] == 13
    rows = await hs.pg_fetch(pg_dsn, "SELECT count(*) AS n FROM webhook_rejections")
    assert rows[0]["n"] == 3  # folded: one row per minute, provider, source and code
    assert (await pg_events.stats(7))["totals"]["received"] == 13


async def test_the_migrate_command_applies_once(tmp_path, kit):
    name = hs.create_database()
    try:
        dsn = hs.dsn_for(name)
        config = kit.write_config(tmp_path, "http://127.0.0.1:9/events", events={"url": dsn})
        script = Path(sys.executable).with_name("webhook-gateway")  # the installed console script
        cmd = [str(script), "migrate", "--config", str(config)]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        applied = (
            "applied: 001_events.sql, 002_secret_index.sql, 003_holder.sql, 004_partitioned.sql, "
            "005_delivery_attempts.sql, 006_lz4.sql, 007_legacy_unique.sql, 008_fillfactor.sql"
        )
        assert (first.returncode, first.stdout.strip()) == (0, applied), first.stderr
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert (second.returncode, second.stdout.strip()) == (0, "up to date"), second.stderr
        # Replicas starting together on a migrated database: the advisory lock serializes them.
        stores = [PostgresEventStore(dsn) for _ in range(3)]
        await asyncio.gather(*(s.start() for s in stores))
        assert all([await s.ping() for s in stores])
        for s in stores:
            await s.close()
    finally:
        hs.drop_database(name)


async def test_replicas_migrating_a_fresh_database_together():
    name = hs.create_database()
    try:
        stores = [PostgresEventStore(hs.dsn_for(name)) for _ in range(3)]
        await asyncio.gather(*(s.start() for s in stores))
        assert all(await asyncio.gather(*(s.ping() for s in stores)))
        assert all(await asyncio.gather(*(s.insert(rec(f"m{i}")) for i, s in enumerate(stores))))
        for s in stores:
            await s.close()
        rows = await hs.pg_fetch(hs.dsn_for(name), "SELECT version FROM webhook_gateway_migrations")
        assert [r["version"] for r in rows] == [
            "001_events.sql",
            "002_secret_index.sql",
            "003_holder.sql",
            "004_partitioned.sql",
            "005_delivery_attempts.sql",
            "006_lz4.sql",
            "007_legacy_unique.sql",
            "008_fillfactor.sql",
        ]
        # Every partition, the first day's (the pre-004 table) too, carries the parent's indexes only.
        indexes = await hs.pg_fetch(hs.dsn_for(name), """
            SELECT c.relname AS part, count(*) AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_index x ON x.indrelid = c.oid WHERE i.inhparent = 'webhook_events'::regclass
            GROUP BY c.relname""")  # fmt: skip
        assert {r["part"]: r["n"] for r in indexes}["webhook_events_legacy"] == 6
        assert {r["n"] for r in indexes} == {6}
    finally:
        hs.drop_database(name)


async def test_an_unreachable_database_is_a_store_error_fast():
    store = PostgresEventStore(f"postgresql://postgres@127.0.0.1:{hs.free_port()}/test", timeout=1)
    await store.start()  # does not raise: the gateway serves and reports not ready
    try:
        started = time.monotonic()
        assert await store.ping() is False
        with pytest.raises(StoreError):
            await store.insert(rec("x"))
        with pytest.raises(StoreError):
            await store.claim_due(10, lease=30)
        with pytest.raises(StoreError):
            await store.stats(1)
        assert time.monotonic() - started < 3
    finally:
        await store.close()


async def test_a_cut_connection_heals_by_itself(pg_dsn):
    host_port = pg_dsn.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = await hs.TcpProxy(host, int(port)).start()
    store = PostgresEventStore(pg_dsn.replace(host_port, f"127.0.0.1:{proxy.port}"), timeout=1)
    await store.start()
    try:
        assert await store.insert(rec("before")) is True
        await proxy.cut()
        with pytest.raises(StoreError):
            await store.insert(rec("during"))
        assert await store.ping() is False
        await proxy.restore()
        await hs.eventually(store.ping, timeout=5)
        assert await store.insert(rec("during")) is True  # the refused event goes in on retry
        assert await store.insert(rec("before")) is False
    finally:
        await store.close()
        await proxy.cut()


async def test_a_late_worker_cannot_undo_the_attempt_that_re_claimed_its_event(pg_events):
    """Worker A's lease runs out; B re-claims and delivers. A's late verdict (retry, dead or
    delivered) is fenced off by its attempt number, so the row stays delivered."""
    await insert_all(pg_events, [rec("fenced")])
    (a,) = await pg_events.claim_due(1, lease=0.2)
    await asyncio.sleep(0.3)
    (b,) = await pg_events.claim_due(1, lease=30)
    assert (a.id, b.attempts) == (b.id, a.attempts + 1)
    await pg_events.mark_delivered(b.id, attempt=b.attempts)
    await pg_events.mark_retry(a.id, 0.0, "late failure", attempt=a.attempts)
    await pg_events.mark_dead(a.id, "late give-up", attempt=a.attempts)
    stored = await pg_events.get(a.id)
    assert stored is not None and stored.status == "delivered" and stored.last_error is None
    assert await pg_events.claim_due(5, lease=30) == []
