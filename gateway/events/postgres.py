"""``postgresql://`` event store on asyncpg, with group commit.

Concurrent ``insert`` calls share one transaction: while one batch is being written the next
ones queue up, and the writer takes them all in one ``INSERT ... SELECT FROM unnest(...)``. Under
load that is one round trip for hundreds of events; when idle, an event is written at once.
Rejections are folded in memory and upserted once a second. Delivery workers claim due events
with ``FOR UPDATE SKIP LOCKED``, so any number of replicas share the outbox safely.

Delivery attempts (``webhook_delivery_attempts``) ride in the statements that already run: sync
mode's attempts in the group-committed insert of the audit copy, queue mode's in the batched
delivered-mark and in the retry/dead updates (a data-modifying ``WITH``): no extra round trip.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import orjson

from gateway.errors import StoreError, UnstorableEvent
from gateway.events.attempts import KEEP_PER_EVENT, Attempt
from gateway.events.base import (
    BACKLOG_STATUSES,
    EVENT_STORES,
    Backlog,
    EventFilter,
    EventRecord,
    EventStoreOptions,
    Rejected,
)
from gateway.events.holder import RESCUE, Holder
from gateway.events.partitions import drop_expired, ensure_ahead
from gateway.outcomes import EventStatus, Outcome
from gateway.stats import StatsLedger, summarize

log = logging.getLogger("gateway.events")
#: Audit copies (sync mode) kept while PostgreSQL is unreachable, retried every second; beyond
#: this many bytes of bodies and envelopes, new ones are lost (logged and counted).
HOLD_BYTES = 64 * 1024 * 1024
RESCUE_EVERY = 1.0  # seconds between looks for claims whose holder is gone (see holder.py)
_COLUMNS = (
    "provider, event_id, event_type, received_at, status, next_attempt_at, client_ip, headers, body, event, "
    "secret_index, locked_until, attempts, delivered_at, holder"
)
# SQL built with f-strings below interpolates only constants and `_where` clauses made of fixed
# column names with $n placeholders; every value travels as a bind parameter.


def _at(micros: str) -> str:
    """SQL for the time ``micros`` (microseconds since 1970, UTC; see :func:`_micros`) holds.
    The statements that run for every event (the insert, the delivered-mark, the tries) bind their
    times so: asyncpg's timestamptz encoder costs about 2 us of the gateway's CPU per value, an
    integer a tenth of that. Exact (whole seconds and the rest multiplied separately), NULL stays NULL."""
    return (f"(timestamptz 'epoch' + ({micros} / 1000000) * interval '1 second'"
            f" + ({micros} % 1000000) * interval '1 microsecond')")  # fmt: skip


# One row per (provider, event_id): the key goes into webhook_event_keys first (the event table is
# partitioned by day, so it cannot hold that unique key itself), and only new keys' events go in.
_INSERT = f"""
WITH v AS (
    SELECT provider, event_id, event_type, {_at("received_at")} AS received_at, status,
           {_at("next_attempt_at")} AS next_attempt_at, client_ip, headers, body, event, secret_index,
           {_at("locked_until")} AS locked_until, attempts, {_at("delivered_at")} AS delivered_at, holder
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::jsonb[],
                $9::bytea[], $10::bytea[], $11::smallint[], $12::bigint[], $13::int[], $14::bigint[], $15::int[])
         AS v({_COLUMNS})
), k AS (
    INSERT INTO webhook_event_keys (provider, event_id, received_at)
    SELECT provider, event_id, received_at FROM v
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING provider, event_id
)
INSERT INTO webhook_events ({_COLUMNS})
SELECT v.* FROM v JOIN k USING (provider, event_id)
RETURNING id, provider, event_id
"""  # noqa: S608
# Deleting events frees their keys: a purged or expired event id may be accepted again. Their
# delivery attempts go with them.
_DELETE = """
WITH d AS (DELETE FROM webhook_events WHERE {0} RETURNING id, provider, event_id),
     k AS (DELETE FROM webhook_event_keys k USING d WHERE k.provider = d.provider AND k.event_id = d.event_id),
     t AS (DELETE FROM webhook_delivery_attempts WHERE record_id IN (SELECT id FROM d))
SELECT count(*) FROM d
"""
_TRY_COLUMNS = "record_id, attempt, at, result, status, latency_ms, response, error"
_TRY_TYPES = ("int", "bigint", "text", "smallint", "real", "text", "text")  # `at` as _micros
# Sync mode: the tries happened before the event had an id; they join the rows the insert returned.
_KEYED, _INSERTED = _INSERT.strip().split("\nINSERT INTO webhook_events ", 1)
_INSERT_TRIED = f"""
{_KEYED}, ins AS (INSERT INTO webhook_events {_INSERTED}),
tries AS (
    INSERT INTO webhook_delivery_attempts ({_TRY_COLUMNS})
    SELECT ins.id, t.attempt, {_at("t.at")}, t.result, t.status, t.latency_ms, t.response, t.error
    FROM unnest($16::text[], $17::text[], {", ".join(f"${18 + i}::{t}[]" for i, t in enumerate(_TRY_TYPES))})
         AS t(provider, event_id, attempt, at, result, status, latency_ms, response, error)
    JOIN ins ON ins.provider = t.provider AND ins.event_id = t.event_id)
SELECT id, provider, event_id FROM ins
"""  # noqa: S608


def _with_tries(first: int) -> str:
    """A ``WITH`` that inserts the tries bound from ``$first`` on (see :func:`_try_columns`)."""
    params = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(("bigint", *_TRY_TYPES)))
    return (
        f"WITH tries AS (INSERT INTO webhook_delivery_attempts ({_TRY_COLUMNS}) "  # noqa: S608
        f"SELECT record_id, attempt, {_at('at')}, result, status, latency_ms, response, error "
        f"FROM unnest({params}) AS t({_TRY_COLUMNS}))\n"
    )


def _try_columns(tries: Sequence[Attempt]) -> list[list[Any]]:
    """The value columns of ``tries`` (after the key), as arrays for ``unnest``."""
    return [
        [a.number for a in tries], [_micros(a.at) for a in tries], [a.result for a in tries], [a.status for a in tries],
        [a.latency_ms for a in tries], [a.response for a in tries], [a.error for a in tries],
    ]  # fmt: skip


_FOLD = """
INSERT INTO webhook_rejections (minute, provider, source, code, count)
SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (minute, provider, source, code) DO UPDATE SET count = webhook_rejections.count + EXCLUDED.count
"""
# A late worker whose lease ran out (and whose event another worker re-claimed) must not undo
# the newer attempt's outcome: updates from delivery carry the attempt number they were for.
_FENCE = "(${n}::int IS NULL OR (status = 'delivering' AND attempts = ${n}))"
# Updates by id also name the row's received_at when the caller knows it (delivery always does):
# the partition is then pruned and the primary key (id, received_at) found whole.
_ROW = "id = $1 AND (${n}::timestamptz IS NULL OR received_at = ${n})"
_RETRY = f"""
UPDATE webhook_events SET status = 'queued', locked_until = NULL, last_error = $3,
       next_attempt_at = now() + make_interval(secs => $2)
WHERE {_ROW.format(n=5)} AND {_FENCE.format(n=4)}
"""  # noqa: S608
_RELEASE = f"""
UPDATE webhook_events SET status = 'queued', locked_until = NULL, holder = NULL, attempts = attempts - 1,
       next_attempt_at = now()
WHERE {_ROW.format(n=3)} AND {_FENCE.format(n=2)}
"""  # noqa: S608
_DEAD = f"""
UPDATE webhook_events SET status = 'dead', locked_until = NULL, next_attempt_at = NULL, last_error = $2
WHERE {_ROW.format(n=4)} AND {_FENCE.format(n=3)}
"""  # noqa: S608
# The claimed rows are named by their whole primary key (id, received_at): joined on the id
# alone, the planner hashes a scan of every row of every partition on each claim (each partition
# is probed, and a table never analyzed looks big), a cost that grows with the table.
_CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id, received_at FROM webhook_events
    WHERE (status = 'queued' AND next_attempt_at <= now()) OR (status = 'delivering' AND locked_until < now())
    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
UPDATE webhook_events AS e SET status = 'delivering', attempts = e.attempts + 1, holder = $3,
       locked_until = now() + make_interval(secs => $2)
FROM c WHERE e.id = c.id AND e.received_at = c.received_at
RETURNING e.id, e.provider, e.event_id, e.event_type, e.received_at, e.status, e.attempts, e.next_attempt_at,
          e.last_error, e.delivered_at, e.client_ip, e.event
"""
# Group-committed like inserts: one statement marks every delivery finished since the last one.
# Joined on the whole primary key: on the id alone the planner hashes a scan of every partition.
_DELIVERED = f"""
UPDATE webhook_events AS e SET status = 'delivered', delivered_at = now(), locked_until = NULL,
       next_attempt_at = NULL, last_error = NULL, event = coalesce(v.event, e.event)
FROM (SELECT id, {_at("received_at")} AS received_at, event, attempt
      FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::int[]) AS v(id, received_at, event, attempt)) AS v
WHERE e.id = v.id AND e.received_at = v.received_at
  AND (v.attempt IS NULL OR (e.status = 'delivering' AND e.attempts = v.attempt))
"""  # noqa: S608
_RECEIVED = "SELECT id, received_at FROM webhook_events WHERE id = ANY($1::bigint[])"

# Served by the (status, id) index: only the outbox's rows are read, never the delivered log.
_BACKLOG = """
SELECT status, count(*) AS n, min(received_at) AS oldest FROM webhook_events
WHERE status IN ('queued', 'delivering', 'dead') GROUP BY status
"""


def _errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@EVENT_STORES.register("postgresql", "postgres")
class PostgresEventStore:
    durable = True

    def __init__(self, dsn: str, *, migrate: bool = True, pool_size: int = 10, timeout: float = 5.0,
                 batch_max: int = 512) -> None:  # fmt: skip
        self.url = dsn
        self.migrate = migrate
        self.pool_size = pool_size
        self.timeout = timeout
        self.batch_max = batch_max
        self._pool: Any = None
        self._connecting = asyncio.Lock()
        self._last_attempt = 0.0
        self._pending: list[tuple[EventRecord, asyncio.Future[bool] | None]] = []
        self._delivered: list[
            tuple[int, datetime | None, bytes | None, int | None, Sequence[Attempt], asyncio.Future[None]]
        ] = []
        self._marker: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the idle writer's waiter (see _notify)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._folded: dict[tuple[datetime, str, str, str], int] = defaultdict(int)
        self._held: list[tuple[EventRecord, asyncio.Future[bool] | None]] = []  # see HOLD_BYTES
        self._held_bytes = 0
        self._held_until = 0.0
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.write_failures = 0
        #: Told how many audit copies (``submit``) were lost and why; the app counts them in a metric.
        self.on_audit_lost: Callable[[int, str], None] = lambda count, reason: None
        self._holder = Holder(dsn, timeout)
        self._rescued_at = float("-inf")

    @classmethod
    def open(cls, url: str, options: EventStoreOptions, ledger: StatsLedger | None) -> PostgresEventStore:
        # The rejection counts live in the table: no in-process ledger.
        return cls(url, migrate=options.migrate, pool_size=options.pool_size, timeout=options.timeout)

    @property
    def claims_epoch(self) -> int:
        return self._holder.epoch

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()  # kept: on Python 3.11 each lookup is a getpid() syscall
        self._writer = self._loop.create_task(self._write_loop(), name="event-store-writer")
        try:
            await self._get_pool()
        except StoreError as exc:  # keep serving: readiness is false and writes answer 503
            log.warning("event store unreachable at start; retrying in the background", extra={"error": str(exc)})

    async def close(self) -> None:
        self._closing = True
        self._notify()
        if self._writer is not None:
            await asyncio.wait([self._writer], timeout=self.timeout)
            self._writer.cancel()
        self._lost(self._held, "unavailable")  # the store never came back
        self._held, self._held_bytes = [], 0
        if self._marker is not None:
            await asyncio.wait([self._marker], timeout=self.timeout)
            self._marker.cancel()
        await self._holder.close()
        if self._pool is not None:
            await self._pool.close()

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._connecting:
            if self._pool is not None:
                return self._pool
            if time.monotonic() - self._last_attempt < 1.0:
                raise StoreError("postgresql: unreachable (retrying)")
            self._last_attempt = time.monotonic()
            import asyncpg

            try:
                pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=self.pool_size, command_timeout=self.timeout, timeout=self.timeout,
                    reset=_keep_session,
                )  # fmt: skip
            except _errors() as exc:
                raise StoreError(f"postgresql: {type(exc).__name__}") from exc
            try:
                if self.migrate:
                    await apply_migrations(pool)
            except _errors() as exc:
                pool.terminate()  # the next attempt opens a fresh pool; do not leak this one
                raise StoreError(f"postgresql: {type(exc).__name__}") from exc
            self._pool = pool
            return pool

    async def _run(self, method: str, query: str, *args: Any) -> Any:
        pool = await self._get_pool()
        try:
            return await getattr(pool, method)(query, *args)
        except _errors() as exc:
            raise StoreError(f"postgresql: {type(exc).__name__}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._run("fetchval", "SELECT 1"))
        except StoreError:
            return False

    # -- group commit ------------------------------------------------------------------------

    async def insert(self, record: EventRecord) -> bool:
        """Stored (True) or already there (False), within ``timeout`` or a ``StoreError``: the
        provider then gets 503 and retries. Should the batch still commit later, the retry finds
        the row (a duplicate), and a leased row is delivered once its lease runs out."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((record, future))
        self._notify()
        # One timer on the waiter itself, not wait_for(shield(...)): those cost a task's worth of
        # futures and callbacks per insert. The writer sets only a future that is not done yet.
        timer = loop.call_later(self.timeout, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()

    def submit(self, record: EventRecord) -> None:
        """Audit copy of an event already delivered (sync mode): written in the next batch, unawaited."""
        if len(self._pending) < 100_000:
            self._pending.append((record, None))
            self._notify()
        else:
            self._lost([(record, None)], "backlog")

    def record_rejection(self, provider: str, source: str, code: str) -> None:
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        if len(self._folded) < 100_000:
            self._folded[(minute, provider, source, code)] += 1

    def _notify(self) -> None:
        """Wake the writer if it is idle (a busy one takes what is pending when its batch ends)."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _write_loop(self) -> None:
        last_fold = time.monotonic()
        loop = self._loop or asyncio.get_running_loop()
        while not (self._closing and not self._pending):
            if not self._pending and not self._closing:
                # Idle: wait for an insert, or a second (held rows, folded rejections). A future
                # set by the insert itself, not wait_for(Event.wait()): that wraps the wait in a
                # task of its own, two event-loop turns before the writer runs, turns in which
                # the 202s of the next batch wait; and it ran even with inserts already pending.
                wake = self._wake = loop.create_future()
                timer = loop.call_later(1.0, _wake_up, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                    self._wake = None
            if self._held and time.monotonic() >= self._held_until:
                self._pending[:0], self._held, self._held_bytes = self._held, [], 0
            while self._pending:
                batch, self._pending = self._pending[: self.batch_max], self._pending[self.batch_max :]
                try:
                    await self._write(batch)
                except Exception as exc:  # the writer must outlive any one batch, or inserts hang
                    log.exception("event store write failed")
                    self._lost(batch, "error")
                    _fail(batch, StoreError(f"postgresql: {type(exc).__name__}"))
            if self._folded and (time.monotonic() - last_fold >= 1.0 or self._closing):
                last_fold = time.monotonic()
                await self._fold()

    async def _write(self, batch: list[tuple[EventRecord, asyncio.Future[bool] | None]]) -> None:
        # One row per (provider, event_id): ON CONFLICT DO NOTHING skips a second copy in the same
        # statement, and RETURNING names the key once, so later copies must not read its id.
        first: dict[tuple[str, str], EventRecord] = {}
        for rec, _ in batch:
            first.setdefault((rec.provider, rec.event_id), rec)
        try:
            rows = await self._insert(list(first.values()))
        except StoreError as exc:
            if _bad_data(exc) and len(batch) > 1:
                for item in batch:  # isolate the record the server refused; the rest go in
                    await self._write([item])
                return
            self.write_failures += 1
            if _bad_data(exc):
                self._lost(batch, "refused")
            else:
                self._hold(batch)
            _fail(batch, UnstorableEvent(str(exc)) if _bad_data(exc) else exc)
            return
        ids = {(row["provider"], row["event_id"]): row["id"] for row in rows}
        for rec, fut in batch:
            key = (rec.provider, rec.event_id)
            rec.id = ids.get(key, 0) if first[key] is rec else 0
            if fut is not None and not fut.done():
                fut.set_result(rec.id != 0)

    def _hold(self, batch: list[tuple[EventRecord, asyncio.Future[bool] | None]]) -> None:
        """Keep the audit copies of a batch the store could not take, to retry in a second (an
        insert with a waiter fails at once instead: its provider retries)."""
        dropped = []
        for rec, fut in batch:
            if fut is not None:
                continue
            size = len(rec.body) + len(rec.event)
            if self._closing or self._held_bytes + size > HOLD_BYTES:
                dropped.append((rec, fut))
            else:
                self._held.append((rec, fut))
                self._held_bytes += size
        self._held_until = time.monotonic() + 1.0
        self._lost(dropped, "unavailable")

    def _lost(self, batch: Sequence[tuple[EventRecord, asyncio.Future[bool] | None]], reason: str) -> None:
        """Audit copies of delivered events (no waiter to tell) that will never be written: logged
        and counted, never silent. Inserts with a waiter fail their request instead (503/400)."""
        lost = [rec for rec, fut in batch if fut is None]
        if lost:
            ids = [f"{rec.provider}/{rec.event_id}" for rec in lost[:10]]
            log.error("audit rows lost", extra={"count": len(lost), "reason": reason, "events": ids})
            self.on_audit_lost(len(lost), reason)

    async def _insert(self, recs: list[EventRecord]) -> Any:
        args = [
            [r.provider for r in recs], [r.event_id for r in recs], [r.event_type for r in recs],
            [_micros(r.received_at) for r in recs], [r.status for r in recs],
            [_micros(r.next_attempt_at) for r in recs], [r.client_ip for r in recs],
            [_headers_json(r.headers) for r in recs], [r.body for r in recs], [r.event for r in recs],
            [r.secret_index for r in recs], [_micros(r.locked_until) for r in recs],
            [r.attempts for r in recs], [_micros(r.delivered_at) for r in recs],
            [self._holder.token if r.status == "delivering" else None for r in recs],
        ]  # fmt: skip
        tried = [(r, a) for r in recs for a in r.delivery_attempts]
        if not tried:  # queue mode's inserts: nothing was tried yet
            return await self._run("fetch", _INSERT, *args)
        keys = [[r.provider for r, _ in tried], [r.event_id for r, _ in tried]]
        return await self._run("fetch", _INSERT_TRIED, *args, *keys, *_try_columns([a for _, a in tried]))

    async def _fold(self) -> None:
        folded, self._folded = self._folded, defaultdict(int)
        keys = list(folded)
        try:
            await self._run(
                "execute", _FOLD, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                [k[3] for k in keys], [folded[k] for k in keys],
            )  # fmt: skip
        except StoreError:
            for k in keys:  # keep the counts for the next try
                self._folded[k] += folded[k]

    # -- outbox ------------------------------------------------------------------------------

    async def check_claims(self) -> None:
        if time.monotonic() - self._rescued_at >= RESCUE_EVERY:
            self._rescued_at = time.monotonic()
            await self._rescue()

    async def claim_due(self, limit: int, lease: float) -> builtins.list[EventRecord]:
        await self.check_claims()
        rows = await self._run("fetch", _CLAIM, limit, float(lease), self._holder.token)
        return [_record(row) for row in rows]

    async def _rescue(self) -> None:
        """Hold this process's lock (reconnecting its session if lost), then free the claims of
        processes whose session has ended, so this claim takes them now, not after their lease."""
        token = await self._holder.ensure()
        rows = await self._run("fetch", RESCUE, token or 0)
        if rows:
            log.warning("took over events whose worker is gone", extra={"count": len(rows)})

    async def mark_delivered(
        self, record_id: int, event: bytes | None = None, attempt: int | None = None, tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None:  # fmt: skip
        """Done; ``event`` replaces the stored envelope (its redacted form) when given. Batched
        with every other delivery that finished meanwhile (one UPDATE for them all, which also
        inserts their ``tries``). ``attempt`` fences: the row changes only if that attempt still
        holds the lease. ``received_at`` (the record's) finds the row by its whole key; without
        it, one more statement looks it up first."""
        loop = self._loop or asyncio.get_running_loop()  # kept: each lookup is a getpid() syscall on 3.11
        future: asyncio.Future[None] = loop.create_future()
        self._delivered.append((record_id, received_at, event, attempt, tries, future))
        if self._marker is None or self._marker.done():
            # Its own task, beside the insert writer: a slow UPDATE never delays a 202.
            self._marker = loop.create_task(self._mark_loop(), name="event-store-marker")
        await future

    async def _mark_loop(self) -> None:
        while self._delivered:
            batch, self._delivered = self._delivered[: self.batch_max], self._delivered[self.batch_max :]
            try:
                ids, received = [b[0] for b in batch], [b[1] for b in batch]
                if None in received:
                    unknown = [i for i, r in zip(ids, received, strict=True) if r is None]
                    rows = await self._run("fetch", _RECEIVED, unknown)
                    known = {row["id"]: row["received_at"] for row in rows}
                    received = [r if r is not None else known.get(i) for i, r in zip(ids, received, strict=True)]
                events, attempts = [b[2] for b in batch], [b[3] for b in batch]
                tried = [(b[0], a) for b in batch for a in b[4]]
                if tried:
                    await self._run(
                        "execute", _with_tries(5) + _DELIVERED, ids, [_micros(r) for r in received], events, attempts,
                        [i for i, _ in tried], *_try_columns([a for _, a in tried]),
                    )  # fmt: skip
                else:
                    await self._run("execute", _DELIVERED, ids, [_micros(r) for r in received], events, attempts)
            except Exception as exc:  # StoreError, or a bug: fail this batch, keep the loop's contract
                error = exc if isinstance(exc, StoreError) else StoreError(f"postgresql: {type(exc).__name__}")
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                continue
            for *_, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def mark_retry(
        self, record_id: int, delay: float, error: str, attempt: int | None = None, tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None:  # fmt: skip
        args = [record_id, float(delay), error[:500], attempt, received_at]
        await self._tried(_RETRY, args, record_id, tries)

    async def mark_dead(
        self, record_id: int, error: str, attempt: int | None = None, tries: Sequence[Attempt] = (),
        received_at: datetime | None = None,
    ) -> None:  # fmt: skip
        await self._tried(_DEAD, [record_id, error[:500], attempt, received_at], record_id, tries)

    async def release(self, record_id: int, attempt: int, received_at: datetime | None = None) -> None:
        await self._run("execute", _RELEASE, record_id, attempt, received_at)

    async def add_attempts(self, record_id: int, tries: Sequence[Attempt]) -> None:
        await self._tried("SELECT 1", [], record_id, tries)

    async def _tried(self, query: str, args: list[Any], record_id: int, tries: Sequence[Attempt]) -> None:
        """``query`` with ``args``, inserting ``tries`` in the same statement when there are any."""
        if not tries:
            await self._run("execute", query, *args)
            return
        prefix = _with_tries(len(args) + 1)
        await self._run("execute", prefix + query, *args, [record_id] * len(tries), *_try_columns(tries))

    # -- management --------------------------------------------------------------------------

    async def list(self, flt: EventFilter) -> builtins.list[EventRecord]:
        where, args = _where(flt)
        query = f"SELECT * FROM webhook_events WHERE {where} ORDER BY id DESC LIMIT {int(flt.limit)}"  # noqa: S608
        rows = await self._run("fetch", query, *args)
        return [_record(row) for row in rows]

    async def get(self, record_id: int) -> EventRecord | None:
        row = await self._run("fetchrow", "SELECT * FROM webhook_events WHERE id = $1", record_id)
        if not row:
            return None
        record = _record(row)
        tries = await self._run(
            "fetch",
            f"SELECT {_TRY_COLUMNS} FROM webhook_delivery_attempts WHERE record_id = $1 "  # noqa: S608
            f"ORDER BY at DESC LIMIT {KEEP_PER_EVENT}",
            record_id,
        )
        record.delivery_attempts = [_attempt(t) for t in reversed(tries)]
        return record

    async def requeue(self, flt: EventFilter, ids: builtins.list[int] | None = None) -> int:
        where, args = _where(flt)
        if ids is not None:
            args.append(ids)
            where += f" AND id = ANY(${len(args)}::bigint[])"
        rows = await self._run(
            "fetch",
            "UPDATE webhook_events SET status = 'queued', next_attempt_at = now(), attempts = 0, "  # noqa: S608
            f"locked_until = NULL WHERE {where} AND status <> 'delivering' RETURNING id",
            *args,
        )
        return len(rows)

    async def purge(self, flt: EventFilter) -> int:
        where, args = _where(flt)
        return int(await self._run("fetchval", _DELETE.format(where), *args))

    async def count(self, flt: EventFilter) -> int:
        where, args = _where(replace(flt, before_id=None))
        return int(await self._run("fetchval", f"SELECT count(*) FROM webhook_events WHERE {where}", *args))  # noqa: S608

    async def rejections(self, flt: EventFilter) -> builtins.list[Rejected]:
        clauses, args = ["TRUE"], []
        for column, value, op in (
            ("provider", flt.provider, "="), ("code", flt.status, "="),
            ("minute", flt.since, ">="), ("minute", flt.until, "<"),
        ):  # fmt: skip
            if value is not None:
                args.append(value)
                clauses.append(f"{column} {op} ${len(args)}")
        rows = await self._run(
            "fetch",
            f"SELECT minute, provider, source, code, count FROM webhook_rejections WHERE {' AND '.join(clauses)} "  # noqa: S608
            f"ORDER BY minute DESC, provider, code LIMIT {int(flt.limit)}",
            *args,
        )
        return [Rejected(r["minute"], r["provider"], r["source"], r["code"], int(r["count"])) for r in rows]

    async def expire(self, days: float) -> int:
        """Drop the daily partitions past ``days`` (those with nothing undelivered), delete the
        finished rows left before the cutoff, and create the partitions of the days ahead."""
        cutoff = datetime.now(UTC) - timedelta(days=days)
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                removed, _ = await drop_expired(conn, cutoff)
                await ensure_ahead(conn)
        except _errors() as exc:
            raise StoreError(f"postgresql: {type(exc).__name__}") from exc
        rest = "received_at < $1 AND status IN ('delivered', 'dead')"
        removed += int(await self._run("fetchval", _DELETE.format(rest), cutoff))
        await self._run("execute", "DELETE FROM webhook_rejections WHERE minute < $1", cutoff)
        # By time, not by event: webhook_events may be partitioned, and has no key to cascade from.
        await self._run("execute", "DELETE FROM webhook_delivery_attempts WHERE at < $1", cutoff)
        return removed

    async def stats(self, days: int) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime(first.year, first.month, first.day, tzinfo=UTC)
        accepted = await self._run(
            "fetch",
            "SELECT (received_at AT TIME ZONE 'UTC')::date AS day, provider, status, count(*) AS n "
            "FROM webhook_events WHERE received_at >= $1 GROUP BY 1, 2, 3",
            since,
        )
        folded = await self._run(
            "fetch",
            "SELECT (minute AT TIME ZONE 'UTC')::date AS day, provider, code, sum(count) AS n "
            "FROM webhook_rejections WHERE minute >= $1 GROUP BY 1, 2, 3",
            since,
        )
        rows = [(r["day"], r["provider"], _outcome(r["status"]), int(r["n"])) for r in accepted]
        rows += [(r["day"], r["provider"], r["code"], int(r["n"])) for r in folded]
        return summarize(rows, days, source="postgresql", since=None)

    async def backlog(self) -> Backlog:
        rows = await self._run("fetch", _BACKLOG)
        counts = dict.fromkeys(BACKLOG_STATUSES, 0)
        oldest = [r["oldest"] for r in rows if r["status"] != "dead"]
        counts.update({r["status"]: int(r["n"]) for r in rows})
        return Backlog(counts, min(oldest, default=None))


async def apply_migrations(pool: Any) -> list[str]:
    """Apply the packaged SQL migrations not yet applied, under an advisory lock (replica-safe)."""
    files = sorted(
        (f for f in resources.files("gateway.events").joinpath("migrations").iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    applied = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('webhook_gateway_migrations'))")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS webhook_gateway_migrations (version TEXT PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM webhook_gateway_migrations")}
        for f in files:
            if f.name not in done:
                await conn.execute(f.read_text("utf-8"))
                await conn.execute("INSERT INTO webhook_gateway_migrations (version) VALUES ($1)", f.name)
                applied.append(f.name)
        await ensure_ahead(conn)  # days may have passed since the last start
    return applied


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: none. asyncpg's default sends one more query (unlock advisory
    locks, close cursors, UNLISTEN, RESET ALL) after every statement, a round trip that each group
    commit waited for. The store leaves no session state behind: its locks and settings are
    transaction-scoped (``pg_advisory_xact_lock``, ``SET LOCAL``), the holder's session lock lives
    on a connection of its own, and asyncpg still rolls back a transaction left open."""


def _headers_json(headers: dict[str, str]) -> str:
    """The headers column's JSON. Their names are usually multidict's ``istr`` (a ``str``
    subclass), which orjson takes as keys only with ``OPT_NON_STR_KEYS``: without it every call
    raised and fell back to the stdlib (5.5 us for 6 headers, against 0.4 us). A value orjson
    refuses (a lone surrogate) is written by the stdlib with ASCII escapes, as before."""
    try:
        return orjson.dumps(headers, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(headers)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(at: datetime | None) -> int | None:
    """``at`` as whole microseconds since 1970 in UTC (exact: a datetime holds microseconds), as
    the hot statements bind times (see :func:`_at`). A naive datetime counts as UTC."""
    if at is None:
        return None
    return ((at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH) // _MICROSECOND


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _time_out(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_exception(StoreError("postgresql: the commit did not finish in time"))


def _fail(batch: list[tuple[EventRecord, asyncio.Future[bool] | None]], exc: Exception) -> None:
    for _, fut in batch:
        if fut is not None and not fut.done():
            fut.set_exception(type(exc)(str(exc)))  # one instance per waiter: each gets its traceback


def _bad_data(exc: StoreError) -> bool:
    """The server (or asyncpg's encoder) refused a value (class 22: a NUL in a text column, a lone
    surrogate): that record can never be stored, unlike a connection failure, which may heal."""
    import asyncpg

    return isinstance(exc.__cause__, asyncpg.DataError)


#: A JSON ``\u0000`` escape: not preceded by a backslash, after any number of escaped backslashes.
NUL_ESCAPE = r"(?<!\\)((?:\\\\)*)\\u0000"
NUL_REPLACEMENT = r"\1\\ufffd"  # the same syntax in Python's re and PostgreSQL's regexp_replace


def _where(flt: EventFilter) -> tuple[str, list[Any]]:
    clauses, args = ["TRUE"], []
    for column, value, op in (
        ("provider", flt.provider, "="), ("status", flt.status, "="), ("event_id", flt.event_id, "="),
        ("event_type", flt.event_type, "="), ("received_at", flt.since, ">="), ("received_at", flt.until, "<"),
        ("id", flt.before_id, "<"),
    ):  # fmt: skip
        if value is not None:
            args.append(value)
            clauses.append(f"{column} {op} ${len(args)}")
    if flt.contains is not None:
        # The payload as the CloudEvent carries it (always JSON, unlike the raw body of a form post).
        # jsonb refuses \u0000, so one stored payload holding it would fail every search: NUL is
        # read as U+FFFD on both sides (an escaped backslash before u0000 is text, left alone).
        args += [re.sub(NUL_ESCAPE, NUL_REPLACEMENT, json.dumps(flt.contains)), NUL_ESCAPE, NUL_REPLACEMENT]
        text = f"regexp_replace(convert_from(event, 'UTF8'), ${len(args) - 1}, ${len(args)}, 'g')"
        clauses.append(f"{text}::jsonb #> '{{data,payload}}' @> ${len(args) - 2}::jsonb")
    return " AND ".join(clauses), args


def _record(row: Any) -> EventRecord:
    """A row as a record; a claim's row carries only what delivery needs (no headers, no body)."""
    headers, body = row.get("headers"), row.get("body")
    return EventRecord(
        id=row["id"], provider=row["provider"], event_id=row["event_id"], event_type=row["event_type"],
        received_at=row["received_at"], status=row["status"], attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"], last_error=row["last_error"], delivered_at=row["delivered_at"],
        client_ip=row["client_ip"], headers=json.loads(headers) if isinstance(headers, str) else dict(headers or {}),
        body=bytes(body) if body is not None else b"", event=bytes(row["event"]),
        secret_index=row.get("secret_index"),
    )  # fmt: skip


def _attempt(row: Any) -> Attempt:
    return Attempt(
        at=row["at"], number=row["attempt"], result=row["result"], latency_ms=round(float(row["latency_ms"]), 3),
        status=row["status"], response=row["response"], error=row["error"],
    )  # fmt: skip


def _outcome(status: str) -> str:
    """The stats outcome of a stored event: delivered ones were forwarded, the rest queued."""
    if status == EventStatus.DELIVERED:
        return Outcome.FORWARDED
    return Outcome.DEAD if status == EventStatus.DEAD else Outcome.QUEUED
