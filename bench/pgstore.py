"""PostgreSQL's CPU per queue-mode event: the event store's own insert and delivered-mark statements.

``python bench/pgstore.py [--rounds 300] [--batch 32] [--fillfactor 100,50] [--repeats 2]`` creates
a fresh database (``pgstore_bench``, dropped again at the end) for each variant, migrates it with
the gateway's migrations, optionally sets another ``fillfactor`` on its partitions, and then, on one
connection, runs ``rounds`` group commits of ``batch`` events the way queue mode does: the insert
of leased rows (``status = 'delivering'``), then the batched delivered-mark with one delivery
attempt each. It prints the server's CPU per event for each statement (user + system time of that
one backend, from ``/proc``, so other load on the machine hardly moves it), the client's CPU per
event spent in asyncpg (encoding the arrays, reading the answers), the WAL written per event and
the heap per row. Bodies are Stripe events as the bench's generator makes them (about 1.5 KB).
Autovacuum is off for the tables, so its work does not land in the window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import gen
import orjson

from gateway.events import postgres as store

TICK = os.sysconf("SC_CLK_TCK")
NAME = "pgstore_bench"
# The CloudEvent the gateway stores beside the body (gateway/pipeline/normalize.py): the payload
# again, plus about 450 bytes of envelope and normalized fields.
ENVELOPE = (
    b'{"specversion":"1.0","id":"%s","source":"webhook-gateway/stripe","type":"stripe.payment_intent.succeeded",'
    b'"time":"2026-12-03T21:23:22.011Z","datacontenttype":"application/json","data":{"provider":"stripe",'
    b'"event_type":"payment_intent.succeeded","verified":true,"payment":{"id":"pi_3ctHIuG5ZoaYsmPc1kjIz52W",'
    b'"status":"completed","provider_status":"succeeded","amount":"1458.63","currency":"USD"},"payload":%s}}'
)


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def measure(server: str, fillfactor: int | None, rounds: int, batch: int) -> dict[str, float]:
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {NAME}")
        pool = await asyncpg.create_pool(f"{server}/{NAME}", min_size=1, max_size=1)
        await store.apply_migrations(pool)
        await pool.close()
        conn = await asyncpg.connect(f"{server}/{NAME}")
        parts = [r[0] for r in await conn.fetch("SELECT inhrelid::regclass::text FROM pg_inherits "
                                                "WHERE inhparent = 'webhook_events'::regclass")]  # fmt: skip
        for table in [*parts, "webhook_event_keys", "webhook_delivery_attempts"]:
            extra = f", fillfactor = {fillfactor}" if fillfactor and table in parts else ""
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false{extra})")
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        rng = random.Random(7)
        headers = '{"Content-Type": "application/json", "Stripe-Signature": "[REDACTED]"}'
        totals = dict.fromkeys(("insert", "mark", "client_insert", "client_mark"), 0.0)
        lsn = None
        for r in range(rounds + 20):  # the first 20 rounds warm the caches and are not counted
            if r == 20:
                lsn = await conn.fetchval("SELECT pg_current_wal_lsn()")
            now = datetime.now(UTC)
            at, lease = store._micros(now), store._micros(now + timedelta(seconds=60))
            ids = [f"evt_{r}_{k}" for k in range(batch)]
            bodies = [orjson.dumps(gen.payment_intent_succeeded(rng, i, int(time.time()))) for i in ids]
            events = [ENVELOPE % (i.encode(), b) for i, b in zip(ids, bodies, strict=True)]
            args = [["stripe"] * batch, ids, ["payment_intent.succeeded"] * batch, [at] * batch,
                    ["delivering"] * batch, [None] * batch, ["127.0.0.1"] * batch, [headers] * batch,
                    bodies, events, [0] * batch, [lease] * batch, [1] * batch, [None] * batch,
                    [1] * batch]  # fmt: skip
            s0, c0 = backend_cpu(pid), time.process_time()
            rows = await conn.fetch(store._INSERT, *args)
            s1, c1 = backend_cpu(pid), time.process_time()
            keys = [row["id"] for row in rows]
            tries = [keys, [1] * batch, [at] * batch, ["delivered"] * batch, [204] * batch, [1.5] * batch,
                     [""] * batch, [None] * batch]  # fmt: skip
            await conn.execute(store._with_tries(5) + store._DELIVERED, keys, [at] * batch, [None] * batch,
                               [1] * batch, *tries)  # fmt: skip
            s2, c2 = backend_cpu(pid), time.process_time()
            if r >= 20:
                spent = {"insert": s1 - s0, "mark": s2 - s1, "client_insert": c1 - c0, "client_mark": c2 - c1}
                for k, v in spent.items():
                    totals[k] += v
        n = rounds * batch
        wal = float(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn))
        heap = sum([await conn.fetchval("SELECT pg_relation_size($1::regclass)", p) for p in parts])
        rows_stored = await conn.fetchval("SELECT count(*) FROM webhook_events")
        await conn.close()
        out = {k: v / n * 1e6 for k, v in totals.items()}
        out.update(wal=wal / n, heap=heap / rows_stored)
        return out
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        await admin.close()


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--fillfactor", default="", help="comma-separated fillfactors to compare (empty: as migrated)")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    variants = [int(f) for f in a.fillfactor.split(",") if f] or [None]
    for _ in range(a.repeats):
        for ff in variants:
            m = await measure(a.server, ff, a.rounds, a.batch)
            print(f"fillfactor {ff or 'as migrated':>11}: server insert {m['insert']:6.1f}  "
                  f"mark {m['mark']:6.1f} us/event;"
                  f"  client insert {m['client_insert']:5.1f}  mark {m['client_mark']:5.1f} us/event;"
                  f"  WAL {m['wal']:5.0f} B/event; heap {m['heap']:5.0f} B/row", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
