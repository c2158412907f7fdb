"""PostgreSQL's side of a queue-mode webhook, for docs/scaling.md (run by ``scaling_probe.py``).

With the gateway's own ``PostgresEventStore`` on a scratch database (created and dropped here):
``--pg-events`` events inserted by 64 concurrent callers (the 202's group commit), then claimed and
marked delivered with one attempt each, as ``delivery`` does. Measured per event:

- **server CPU**: utime + stime (``/proc/<pid>/stat``) of the backends connected to the scratch
  database (the pool and the lease holder's session). The shared background processes (WAL writer,
  checkpointer) are not counted: other databases on the same server use them too.
- **WAL bytes**: ``pg_walinspect`` records over the run that touch the scratch database's
  relations, plus the commit records of the same transactions. Other databases' WAL is left out,
  so other load on the server does not move it; the cluster-wide LSN delta is shown beside it.
- **disk**: the scratch database's relation sizes (tables, indexes, TOAST) after the run, per event.

Needs a superuser DSN (CREATE DATABASE, CREATE EXTENSION pg_walinspect) and the server on this host.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.events.attempts import Attempt
from gateway.events.base import EventRecord
from gateway.events.postgres import PostgresEventStore
from gateway.outcomes import EventStatus

TICK = os.sysconf("SC_CLK_TCK")
BODY = json.dumps({
    "id": "evt_1NabcdefGHIJKLmnopQRSTuv", "object": "event", "type": "payment_intent.succeeded",
    "data": {"object": {"id": "pi_3NabcdefGHIJKLmn0pQRSTuv", "object": "payment_intent", "amount": 2000,
                        "currency": "eur", "status": "succeeded", "metadata": {"order": "A-10023"},
                        "description": "x" * 600}},
}).encode()  # fmt: skip
HEADERS = {
    "content-type": "application/json", "stripe-signature": "t=1700000000,v1=" + "a" * 64,
    "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)", "x-forwarded-for": "203.0.113.9",
}  # fmt: skip


def record(i: int) -> EventRecord:
    event = b'{"specversion":"1.0","type":"payment_intent.succeeded","source":"stripe","data":' + BODY + b"}"
    return EventRecord(provider="stripe", event_id=f"evt_{uuid.uuid4().hex}{i}", event_type="payment_intent.succeeded",
                       received_at=(now := datetime.now(UTC)), status=EventStatus.QUEUED, headers=HEADERS,
                       body=BODY, event=event, client_ip="203.0.113.9", next_attempt_at=now)  # fmt: skip


def backend_cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return out


async def snapshot(admin: Any, db: str) -> tuple[dict[int, float], int]:
    pids = [r[0] for r in await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", db)]
    return backend_cpu(pids), await admin.fetchval("SELECT pg_current_wal_lsn()")  # an int (asyncpg)


def cpu_between(a: dict[int, float], b: dict[int, float]) -> float:
    return sum(v - a.get(pid, 0.0) for pid, v in b.items())  # a backend opened meanwhile counts from 0


async def wal_between(conn: Any, start: int, end: int) -> dict[str, int]:
    if end <= start:
        raise RuntimeError("no WAL was written between the two snapshots: nothing was measured")
    oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    row = await conn.fetchrow(
        """WITH r AS (SELECT * FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn)),
                mine AS (SELECT DISTINCT xid FROM r WHERE block_ref LIKE $3 AND xid <> '0'::xid)
           SELECT count(*) AS records, coalesce(sum(record_length), 0) AS bytes,
                  coalesce(sum(fpi_length), 0) AS fpi
           FROM r WHERE block_ref LIKE $3 OR (resource_manager = 'Transaction' AND xid IN (SELECT xid FROM mine))""",
        start, end, f"%/{oid}/%",
    )  # fmt: skip
    total = await conn.fetchval("SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn)::bigint", start, end)
    return {"records": row["records"], "bytes": int(row["bytes"]), "fpi_bytes": int(row["fpi"]), "cluster_bytes": total}


async def insert_all(store: PostgresEventStore, n: int, concurrency: int) -> None:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await store.insert(record(i))

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def deliver_all(store: PostgresEventStore) -> int:
    done = 0
    while batch := await store.claim_due(100, 60.0):
        now = datetime.now(UTC)
        tries = [Attempt(at=now, number=1, result="success", latency_ms=2.0, status=204)]
        await asyncio.gather(*(store.mark_delivered(r.id, None, attempt=r.attempts, tries=tries) for r in batch))
        done += len(batch)
    return done


async def probe(admin_dsn: str, n: int, concurrency: int = 64) -> dict[str, Any]:
    import asyncpg

    db = f"scaling_probe_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {db}")
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + db
    try:
        return await measure(admin, db, dsn, n, concurrency)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


async def measure(admin: Any, db: str, dsn: str, n: int, concurrency: int) -> dict[str, Any]:
    import asyncpg

    store = PostgresEventStore(dsn, pool_size=10)
    await store.start()
    await insert_all(store, 200, concurrency)  # warm: pool open, migrations run, plans cached
    await deliver_all(store)
    s0 = await snapshot(admin, db)
    t0 = time.monotonic()
    await insert_all(store, n, concurrency)
    s1, t1 = await snapshot(admin, db), time.monotonic()
    delivered = await deliver_all(store)
    s2, t2 = await snapshot(admin, db), time.monotonic()
    await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        wal_insert, wal_mark = await wal_between(conn, s0[1], s1[1]), await wal_between(conn, s1[1], s2[1])
        disk = await conn.fetchval("SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relkind IN ('r', 't')"
                                   " AND relnamespace = 'public'::regnamespace")  # fmt: skip
        rows = await conn.fetchval("SELECT count(*) FROM webhook_events")
        row_bytes = await conn.fetchval("SELECT avg(pg_column_size(e.*)) FROM webhook_events e")
    finally:
        await conn.close()
    per = 1e6 / n
    return {
        "events": n, "delivered": delivered, "rows": rows, "body_bytes": len(BODY), "concurrency": concurrency,
        "insert": {"wall_s": t1 - t0, "server_cpu_us_per_event": cpu_between(s0[0], s1[0]) * per,
                   "wal_bytes_per_event": wal_insert["bytes"] / n, "wal": wal_insert},
        "claim_and_mark_delivered": {"wall_s": t2 - t1, "server_cpu_us_per_event": cpu_between(s1[0], s2[0]) * per,
                           "wal_bytes_per_event": wal_mark["bytes"] / n, "wal": wal_mark},
        "disk_bytes_per_event": int(disk) / rows, "row_bytes_avg": float(row_bytes),
    }  # fmt: skip
