"""The event table partitioned by day (migration 004), on a real PostgreSQL.

An install made before 004 is migrated with its rows in place; uniqueness of (provider, event_id)
holds across partitions; retention drops whole partitions, never one that holds an event still
waiting for delivery, and frees the keys of what it drops.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from importlib import resources

import helpers_services as hs
import pytest
from test_events_store import insert_all, rec

from gateway.events.partitions import AHEAD_DAYS, ensure_ahead
from gateway.events.postgres import PostgresEventStore

pg_database, pg_dsn = hs.pg_database, hs.pg_dsn  # fixtures
MIGRATIONS = resources.files("gateway.events").joinpath("migrations")


async def partition_names(dsn: str) -> list[str]:
    rows = await hs.pg_fetch(
        dsn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'webhook_events'::regclass ORDER BY 1",
    )  # fmt: skip
    return [r["relname"] for r in rows]


@pytest.fixture
async def old_install():
    """A database as a gateway before migration 004 left it, with rows of every kind."""
    name = hs.create_database()
    dsn = hs.dsn_for(name)
    try:
        before_004 = ["001_events.sql", "002_secret_index.sql", "003_holder.sql"]
        await _execute(dsn, "".join(MIGRATIONS.joinpath(f).read_text("utf-8") for f in before_004))
        await _execute(dsn, "CREATE TABLE webhook_gateway_migrations (version TEXT PRIMARY KEY, "
                       "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")  # fmt: skip
        await _execute(dsn, "INSERT INTO webhook_gateway_migrations (version) SELECT unnest($1::text[])", before_004)
        await _execute(
            dsn,
            """
            INSERT INTO webhook_events (provider, event_id, received_at, status, body, event, next_attempt_at) VALUES
              ('stripe', 'old_done', now() - interval '40 days', 'delivered', 'b', 'e', NULL),
              ('stripe', 'old_dead', now() - interval '35 days', 'dead', 'b', 'e', NULL),
              ('stripe', 'waiting', now() - interval '1 hour', 'queued', 'b', 'e', now())""",
        )
        yield dsn
    finally:
        hs.drop_database(name)


async def _execute(dsn: str, sql: str, *args) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


async def test_an_existing_install_is_migrated_with_its_rows_in_place(old_install):
    before = {r["event_id"]: r["id"] for r in await hs.pg_fetch(old_install, "SELECT id, event_id FROM webhook_events")}
    store = PostgresEventStore(old_install, timeout=5)
    await store.start()
    try:
        assert await store.ping()
        rows = await hs.pg_fetch(
            old_install, "SELECT id, event_id, tableoid::regclass::text AS part FROM webhook_events"
        )
        assert {r["event_id"]: r["id"] for r in rows} == before
        assert {r["part"] for r in rows} == {"webhook_events_legacy"}
        [kind] = await hs.pg_fetch(old_install, "SELECT partstrat FROM pg_partitioned_table "
                                   "WHERE partrelid = 'webhook_events'::regclass")  # fmt: skip
        assert kind["partstrat"] == b"r"  # range
        assert await store.insert(rec("old_done")) is False  # the key survived the move
        fresh = rec("new_one", age=timedelta(days=-2))  # lands in a daily partition made ahead
        assert await store.insert(fresh) is True and fresh.id > max(before.values())
        [where] = await hs.pg_fetch(old_install, "SELECT tableoid::regclass::text AS part FROM webhook_events "
                                    "WHERE event_id = 'new_one'")  # fmt: skip
        day = datetime.now(UTC) + timedelta(days=2)
        assert where["part"] == f"webhook_events_p{day:%Y%m%d}"
        assert [r.event_id for r in await store.claim_due(10, 30)] == ["waiting"]  # the migrated outbox works
    finally:
        await store.close()


async def test_partitions_exist_for_the_days_ahead(pg_events_partitioned):
    dsn = pg_events_partitioned
    today = datetime.now(UTC)
    names = await partition_names(dsn)
    for ahead in range(1, AHEAD_DAYS + 1):
        assert f"webhook_events_p{today + timedelta(days=ahead):%Y%m%d}" in names
    assert {"webhook_events_legacy", "webhook_events_default"} <= set(names)


@pytest.fixture
async def pg_events_partitioned(pg_dsn):
    store = PostgresEventStore(pg_dsn, timeout=5)
    await store.start()
    assert await store.ping()
    await store.close()
    return pg_dsn


async def test_retention_drops_a_partition_only_once_nothing_in_it_waits(pg_dsn):
    store = PostgresEventStore(pg_dsn, timeout=5)
    await store.start()
    try:
        await insert_all(store, [rec("done", status="delivered"), rec("dead", status="dead"), rec("waits")])
        # A cutoff two days ahead: today's partition (the migrated table) and tomorrow's are "old".
        assert await store.expire(-2) == 2  # the finished rows, one by one: "waits" keeps it alive
        assert "webhook_events_legacy" in await partition_names(pg_dsn)
        (claimed,) = await store.claim_due(1, 30)
        await store.mark_delivered(claimed.id, attempt=claimed.attempts)
        assert await store.expire(-2) == 1  # now the whole partition goes, in one DROP
        names = await partition_names(pg_dsn)
        assert "webhook_events_legacy" not in names
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        assert f"webhook_events_p{tomorrow:%Y%m%d}" not in names  # empty and past the cutoff too
        assert await hs.pg_fetch(pg_dsn, "SELECT * FROM webhook_event_keys") == []
        assert await store.insert(rec("waits")) is True  # an expired id may be accepted again
    finally:
        await store.close()


async def test_purge_frees_the_keys_of_what_it_deletes(pg_dsn):
    store = PostgresEventStore(pg_dsn, timeout=5)
    await store.start()
    try:
        await insert_all(store, [rec("p1", status="dead"), rec("p2", status="delivered")])
        from gateway.events.base import EventFilter

        assert await store.purge(EventFilter(status="dead")) == 1
        keys = await hs.pg_fetch(pg_dsn, "SELECT event_id FROM webhook_event_keys")
        assert [k["event_id"] for k in keys] == ["p2"]
        assert await store.insert(rec("p1")) is True
        assert await store.insert(rec("p2")) is False
    finally:
        await store.close()


async def _fillfactors(dsn: str) -> dict[str, list[str] | None]:
    rows = await hs.pg_fetch(
        dsn, "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'webhook_events'::regclass",
    )  # fmt: skip
    return {r["relname"]: r["reloptions"] for r in rows}


async def test_every_partition_leaves_room_for_a_rows_next_version(old_install):
    """Migration 008 sets fillfactor 50 on the partitions there are (the migrated table too), and
    partitions created later get it when they are made."""
    store = PostgresEventStore(old_install, timeout=5)
    await store.start()
    try:
        assert await store.ping()
        assert set(map(tuple, (await _fillfactors(old_install)).values())) == {("fillfactor=50",)}
        later = datetime.now(UTC) + timedelta(days=30)
        pool = await store._get_pool()
        async with pool.acquire() as conn:
            created = await ensure_ahead(conn, later)
        after = await _fillfactors(old_install)
        assert created and all(after[name] == ["fillfactor=50"] for name in created)
    finally:
        await store.close()


async def test_a_delivered_mark_keeps_a_wide_row_on_its_page(pg_events_partitioned):
    """The delivered-mark's new row version stays on the page of the old one: no row moved to
    another page (and logged whole) per delivery. At the default fillfactor, four rows of this
    size fill a page and every mark moves its row. Inserted leased, as queue mode does."""
    dsn = pg_events_partitioned
    store = PostgresEventStore(dsn, timeout=5)
    await store.start()
    try:
        records = []
        for i in range(6):
            r = rec(f"wide_{i}", status="delivering")
            r.body = os.urandom(1800)  # incompressible, and under the size that TOAST moves out of the row
            r.attempts, r.locked_until = 1, r.received_at + timedelta(seconds=30)
            records.append(r)
        await insert_all(store, records)
        where = "SELECT id, (ctid::text::point)[0] AS page FROM webhook_events WHERE event_id LIKE 'wide_%'"
        before = {r["id"]: r["page"] for r in await hs.pg_fetch(dsn, where)}
        await asyncio.gather(*(store.mark_delivered(r.id, attempt=1, received_at=r.received_at) for r in records))
        rows = await hs.pg_fetch(dsn, where.replace("WHERE", "WHERE status = 'delivered' AND"))
        assert len(rows) == 6 and {r["id"]: r["page"] for r in rows} == before
    finally:
        await store.close()
