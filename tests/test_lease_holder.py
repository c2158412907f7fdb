"""Claims die with their process (gateway/events/holder.py), on a real PostgreSQL.

Two event stores stand for two gateway processes. A process "dies" when the server ends its
holder session (``pg_terminate_backend``, what the server does when a killed process's socket
closes); the kill -9 of a whole gateway is in test_crash_recovery.py. ``RESCUE_EVERY`` is 0 here,
so every claim looks for dead holders and a test need not wait for the next look.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

import helpers_proc as hp
import helpers_services as hs
import pytest
from test_events_store import insert_all, rec

import gateway.events.postgres as pg
from gateway.events.holder import NAMESPACE
from gateway.events.postgres import PostgresEventStore
from gateway.settings.model import QueueSettings

pg_database, pg_dsn, redis_state = hs.pg_database, hs.pg_dsn, hs.redis_state  # fixtures
LEASE = QueueSettings().lease  # the default: nothing below may wait for it


@pytest.fixture(autouse=True)
def _rescue_on_every_claim(monkeypatch):
    monkeypatch.setattr(pg, "RESCUE_EVERY", 0.0)


@pytest.fixture
async def two(pg_dsn):
    stores = [PostgresEventStore(pg_dsn, timeout=5) for _ in range(2)]
    for s in stores:
        await s.start()
        assert await s.claim_due(1, LEASE) == []  # takes its holder lock, as a delivery loop does
    yield stores
    for s in stores:
        await s.close()


async def holder_pids(dsn: str, token: int | None) -> list[int]:
    """The server sessions holding ``token``'s lock (none once its process is gone)."""
    rows = await hs.pg_fetch(
        dsn, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid "
        "AND objid = $2::bigint::oid AND objsubid = 2 AND granted", NAMESPACE, token,
    )  # fmt: skip
    return [r["pid"] for r in rows]


async def end_session_of(dsn: str, store: PostgresEventStore) -> None:
    [pid] = await holder_pids(dsn, store._holder.token)
    await hs.pg_fetch(dsn, "SELECT pg_terminate_backend($1)", pid)
    await hs.eventually(lambda: _gone(dsn, store._holder.token), timeout=5)


async def _gone(dsn: str, token: int | None) -> bool:
    return not await holder_pids(dsn, token)


async def test_a_live_holder_keeps_its_claim_and_a_dead_one_loses_it_at_once(two, pg_dsn):
    a, b = two
    await insert_all(a, [rec("held")])
    (claimed,) = await a.claim_due(1, LEASE)
    assert await b.claim_due(5, LEASE) == []  # a lives: its claim is its own, for the whole lease
    await end_session_of(pg_dsn, a)
    (taken,) = await b.claim_due(5, LEASE)
    assert (taken.id, taken.attempts) == (claimed.id, claimed.attempts + 1)
    # a's late verdict is fenced off by its attempt number: the newer claim stands.
    await a.mark_delivered(claimed.id, attempt=claimed.attempts)
    row = await b.get(claimed.id)
    assert row is not None and (row.status, row.attempts) == ("delivering", taken.attempts)
    await b.mark_delivered(taken.id, attempt=taken.attempts)
    assert (await b.get(claimed.id)).status == "delivered"


async def test_an_event_stored_leased_belongs_to_the_process_that_stored_it(two, pg_dsn):
    a, b = two
    leased = rec("leased", status="delivering")
    leased.locked_until, leased.attempts = datetime.now(UTC) + timedelta(seconds=LEASE), 1
    await insert_all(a, [leased])
    assert await b.claim_due(5, LEASE) == []
    await a.close()  # a clean stop ends the session too
    assert [r.event_id for r in await b.claim_due(5, LEASE)] == ["leased"]


async def test_a_lost_holder_session_comes_back_with_the_same_token(two, pg_dsn):
    a, b = two
    token = a._holder.token
    await insert_all(a, [rec("mine")])
    await a.claim_due(1, LEASE)
    [old] = await holder_pids(pg_dsn, token)
    await hs.pg_fetch(pg_dsn, "SELECT pg_terminate_backend($1)", old)
    await hs.eventually(lambda: _gone(pg_dsn, token), timeout=5)
    await a.claim_due(1, LEASE)  # notices, reconnects, and takes its token back while it is free
    assert a._holder.token == token and (await holder_pids(pg_dsn, token)) not in ([], [old])
    assert await b.claim_due(5, LEASE) == []  # so what it still delivers stays its own


async def test_claims_without_a_holder_wait_for_their_lease(two, pg_dsn):
    """Rows claimed before migration 003 (holder NULL) fall back to the lease alone."""
    a, b = two
    await insert_all(a, [rec("legacy")])
    await a.claim_due(1, 0.5)
    await hs.pg_fetch(pg_dsn, "UPDATE webhook_events SET holder = NULL WHERE event_id = 'legacy'")
    await end_session_of(pg_dsn, a)
    assert await b.claim_due(5, LEASE) == []
    await asyncio.sleep(0.6)  # the lease itself is what is under test here
    assert [r.event_id for r in await b.claim_due(5, LEASE)] == ["legacy"]


async def test_the_holder_session_asks_the_server_for_tight_keepalives(two, pg_dsn):
    a, _ = two
    conn = a._holder._conn
    values = [await conn.fetchval(f"SHOW {name}") for name in ("tcp_keepalives_idle", "tcp_keepalives_interval",
                                                                 "tcp_keepalives_count")]  # fmt: skip
    assert values == ["5", "2", "3"]


_HOLDING_CHILD = """
import asyncio, sys
from gateway.events.holder import Holder

async def main():
    holder = Holder(sys.argv[1], 5)
    print(await holder.ensure(), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_process_loses_its_lock_within_a_second(pg_dsn):
    """What docs/deployment.md states: after SIGKILL the server ends the session at once."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDING_CHILD, pg_dsn, stdout=asyncio.subprocess.PIPE, cwd=hp.REPO
    )
    assert child.stdout is not None
    token = int(await asyncio.wait_for(child.stdout.readline(), 20))
    assert await holder_pids(pg_dsn, token)
    child.kill()
    killed = time.monotonic()
    await child.wait()
    await hs.eventually(lambda: _gone(pg_dsn, token), timeout=5, interval=0.001)
    released = time.monotonic() - killed
    print(f"\nholder lock released {released * 1000:.1f} ms after SIGKILL")
    assert released < 1.0
