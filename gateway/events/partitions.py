"""Daily partitions of ``webhook_events`` (migration 004): created ahead, dropped when expired.

Retention drops a partition whose whole range is older than the cutoff and which holds no event
still waiting for delivery (``queued`` or ``delivering``): one ``DROP TABLE`` instead of a
``DELETE`` of every row and the vacuum after it. Its rows' keys (``webhook_event_keys``) go in
the same transaction, so a dropped event id may be accepted again, as after a row delete.
Whatever is left (the partition the cutoff falls in, one that still holds undelivered events,
the default partition) is deleted row by row, as before.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("gateway.events")
AHEAD_DAYS = 3  # partitions exist this many days ahead, so inserts never wait for one
#: Half of each page is left free at insert time for the row's next version (its delivered-mark),
#: which then stays on its page: see migration 008_fillfactor.sql.
FILLFACTOR = 50
# Replicas maintain partitions one at a time (held to the end of the caller's transaction).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('webhook_gateway_partitions'))"
# Dropping a partition locks the whole table for a moment: never queue behind a long query (and
# make every insert queue behind us); the next round of retention tries again.
_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '2s'"

# Every partition with the upper end of its range (NULL for the default partition).
_PARTITIONS = r"""
SELECT c.relname AS name,
       substring(pg_get_expr(c.relpartbound, c.oid) from $re$TO \('([^']+)'\)$re$)::timestamptz AS upper
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'webhook_events'::regclass
"""
_UNFINISHED = "SELECT EXISTS (SELECT 1 FROM {0} WHERE status IN ('queued', 'delivering'))"
_DROP_KEYS = """
DELETE FROM webhook_event_keys k USING {0} p WHERE k.provider = p.provider AND k.event_id = p.event_id
"""


def _day(ts: datetime) -> datetime:
    return datetime(ts.year, ts.month, ts.day, tzinfo=UTC)


def _name(day: datetime) -> str:
    return f"webhook_events_p{day:%Y%m%d}"


async def partitions(conn: Any) -> list[tuple[str, datetime | None]]:
    return [(r["name"], r["upper"]) for r in await conn.fetch(_PARTITIONS)]


async def ensure_ahead(conn: Any, now: datetime | None = None) -> list[str]:
    """Create the daily partitions from the last one's end (or today) to ``AHEAD_DAYS`` ahead."""
    today = _day(now or datetime.now(UTC))
    await conn.execute(_LOCK)
    uppers = [u for _, u in await partitions(conn) if u is not None]
    day = max([_day(u.astimezone(UTC)) for u in uppers] + [today])
    created = []
    while day <= today + timedelta(days=AHEAD_DAYS):
        async with conn.transaction():
            # A day whose rows already went to the default partition cannot get its own: skip it.
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM webhook_events_default WHERE received_at >= $1 AND received_at < $2)",
                day, day + timedelta(days=1),
            ):  # fmt: skip
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_name(day)} PARTITION OF webhook_events "
                    f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}') "
                    f"WITH (fillfactor = {FILLFACTOR})"
                )
                created.append(_name(day))
        day += timedelta(days=1)
    return created


async def drop_expired(conn: Any, cutoff: datetime) -> tuple[int, list[str]]:
    """Drop every partition that ends at or before ``cutoff`` and holds nothing undelivered;
    returns the rows they held and their names."""
    import asyncpg

    removed, dropped = 0, []
    await conn.execute(_LOCK)
    for name, upper in await partitions(conn):
        if upper is None or upper > cutoff:
            continue
        try:
            removed += await _drop(conn, name)
            dropped.append(name)
        except _Busy:
            pass
        except asyncpg.LockNotAvailableError:
            log.warning("retention: partition busy, dropped next time", extra={"partition": name})
    return removed, dropped


class _Busy(Exception):
    """The partition still holds an event waiting for delivery."""


async def _drop(conn: Any, name: str) -> int:
    table = f'"{name}"'  # a name from pg_class, not from input; quoted anyway
    async with conn.transaction():
        await conn.execute(_LOCK_TIMEOUT)
        await conn.execute(f"LOCK TABLE webhook_events, {table} IN ACCESS EXCLUSIVE MODE")
        if await conn.fetchval(_UNFINISHED.format(table)):
            raise _Busy
        rows: int = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        await conn.execute(_DROP_KEYS.format(table))
        await conn.execute(f"DROP TABLE {table}")
        return rows
