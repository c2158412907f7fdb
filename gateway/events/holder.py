"""Leases that die with their process: a PostgreSQL session-level advisory lock per process.

A claimed event (``status = 'delivering'``) carries the claimer's ``holder`` token. Each process
holds ``pg_advisory_lock(NAMESPACE, token)`` on one dedicated connection for as long as it lives;
PostgreSQL releases a session lock when the session ends. So when a process is killed, its
kernel closes the socket, the server ends the session, the lock is gone, and any other claimer
may take the events over at once (:data:`RESCUE`) instead of waiting for ``locked_until``.

Why an advisory lock and not ``pg_backend_pid()`` checked against ``pg_stat_activity``: a lock
cannot be reused by a new session with the same pid, needs no privilege to see other roles'
sessions, and the check is itself a lock, so it cannot race with a holder taking its lock.

A host that vanishes without closing its sockets (power loss, a partition) is noticed by the
server's TCP keepalive, tightened for this one session (:data:`KEEPALIVE`): within about
5 + 2 * 3 = 11 s. The lease (``queue.lease``) stays the backstop for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

log = logging.getLogger("gateway.events")

#: The first key of every holder lock ("WHGT"), so the gateway's locks never meet an application's.
NAMESPACE = 0x57484754
# Per-session settings (user-settable): the server probes an idle holder session after 5 s of
# silence, every 2 s, and drops it after 3 unanswered probes.
KEEPALIVE = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3"}

# Expire the lease of every claim whose holder's lock nobody holds (its session ended), so the
# next claim takes it. ``pg_try_advisory_xact_lock_shared`` succeeds only while no session holds
# the holder's exclusive lock, and keeps a holder from taking that token until this commits: the
# check and the lock cannot interleave, even when a row is re-checked after a concurrent update.
# Run on a pool connection, never on the holder's own session (its own lock would not conflict).
RESCUE = f"""
UPDATE webhook_events SET locked_until = now()
WHERE status = 'delivering' AND holder IS NOT NULL AND holder <> $1 AND locked_until > now()
  AND pg_try_advisory_xact_lock_shared({NAMESPACE}, holder)
RETURNING id
"""  # noqa: S608


class Holder:
    """This process's holder token and the session that holds its lock."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.token: int | None = None  # None: no lock held, so claims fall back to the lease alone
        #: Sessions lost so far. While none holds the lock, another worker may take this process's
        #: claims over: a delivery not yet sent, claimed under an older epoch, is given back.
        self.epoch = 0
        self._last: int | None = None  # the token held before the session was lost
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._warned = False  # once per outage, not once a second

    async def ensure(self) -> int | None:
        """The token, (re)connecting first if the session is gone; None while unreachable."""
        async with self._lock:
            if self._conn is not None and await self._alive():
                return self.token
            await self._drop()
            try:
                await self._connect()
                self._warned = False
            except Exception as exc:  # asyncpg or OS errors: unreachable now, tried again next cycle
                if not self._warned:
                    log.warning("lease holder session unavailable", extra={"error": type(exc).__name__})
                    self._warned = True
                await self._drop()
            return self.token

    async def _alive(self) -> bool:
        try:
            await self._conn.fetchval("SELECT 1", timeout=self.timeout)
        except TimeoutError:
            # Slow, not gone: the lock lasts as long as the session. Dropping it here would hand
            # this process's events to another worker while it still delivers them.
            return not self._conn.is_closed()
        except Exception:  # a broken connection: the session, and so the lock, is gone
            return False
        return True

    async def _connect(self) -> None:
        import asyncpg

        settings = {"application_name": "webhook-gateway lease holder", **KEEPALIVE}
        self._conn = await asyncpg.connect(self.dsn, timeout=self.timeout, server_settings=settings)
        # Keep the old token when it is free: the events this process still delivers stay ours.
        wanted = [self._last] if self._last is not None else []
        for token in [*wanted, *(secrets.randbelow(2**31 - 1) + 1 for _ in range(8))]:
            if await self._conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", NAMESPACE, token):
                self.token = token
                return
        raise RuntimeError("no free holder token")

    async def _drop(self) -> None:
        if self.token is not None:
            self.epoch += 1
        self._last, self.token = self.token or self._last, None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._conn.close(), self.timeout)
            self._conn = None
            self.token = None
