"""Real Redis and PostgreSQL for the store, queue-mode and process tests, isolated per session.

Redis: database 7 of the shared server (``GATEWAY_TEST_REDIS_DB`` overrides), with a fresh key
prefix per test, deleted afterwards. PostgreSQL: a fresh database ``gw_test_<random>`` per test
module, created from the shared ``test`` database and dropped at the end; tables are truncated
before each test. Nothing here touches another engineer's keys or tables.

A service that does not answer fails the test loudly (with or without ``CI=true``): these tests
exist to run against the real thing, and ``make test`` starts both services.

Import the fixtures into a test module by name (``from helpers_services import pg_dsn``);
``TcpProxy`` and ``RedisServer`` are the tools for cutting a dependency in the middle of a test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('GATEWAY_TEST_REDIS_DB', '7')}"
PG_ADMIN_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = ("webhook_events", "webhook_event_keys", "webhook_rejections", "webhook_delivery_attempts")


def unavailable(what: str, exc: BaseException) -> None:
    ci = " (CI=true)" if os.environ.get("CI") == "true" else ""
    pytest.fail(
        f"{what} is unreachable{ci}: {type(exc).__name__}: {exc}. These tests need real services; "
        "start them with `make test` or scripts/services.sh.",
        pytrace=False,
    )


def dsn_for(database: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


async def pg_admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def pg_fetch(dsn: str, query: str, *args: Any) -> list[Any]:
    """One query on a connection of its own: what is really committed, not what a pool caches."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _run(coro_fn: Any, *args: Any) -> Any:
    """Run ``coro_fn(*args)`` on a loop of its own in a thread: callable from sync fixtures and
    from inside a running test loop alike."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn(*args)).result()


def create_database() -> str:
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    try:
        _run(pg_admin, f"CREATE DATABASE {name}")
    except Exception as exc:  # refused, timed out, or refused login: all mean "no PostgreSQL"
        unavailable(f"PostgreSQL at {PG_ADMIN_DSN}", exc)
    return name


def drop_database(name: str) -> None:
    with contextlib.suppress(Exception):
        _run(pg_admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh database for this module; its DSN."""
    name = create_database()
    yield dsn_for(name)
    drop_database(name)


@pytest.fixture
async def pg_dsn(pg_database: str) -> str:
    """The module's database with empty event tables (created by the first store that starts)."""
    await pg_truncate(pg_database)
    return pg_database


async def pg_truncate(dsn: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for table in TABLES:
            if await conn.fetchval("SELECT to_regclass($1)", table):
                await conn.execute(f"TRUNCATE {table} RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture
def redis_state() -> Iterator[dict[str, str]]:
    """``state:`` settings on the shared Redis with a prefix of this test's own; keys removed after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    prefix = f"gwtest:{uuid.uuid4().hex[:10]}:"
    yield {"url": REDIS_URL, "key_prefix": prefix}
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TcpProxy:
    """A loopback TCP forwarder to ``target``: ``cut()`` stops listening and drops every
    connection (the dependency is gone: connections fail fast), ``restore()`` listens again on
    the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.frozen = False

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()

    async def restore(self) -> None:
        """Listen again after ``cut()``, or forward again after ``freeze()``."""
        if self._server is not None:  # frozen: drop the held connections, forward new ones
            await self.cut()
            self.frozen = False
        await self.start()

    async def freeze(self) -> None:
        """A network partition: connections stay open, new ones are accepted, no byte moves."""
        self.frozen = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.frozen:
            self._writers.add(writer)  # held open, never answered
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if self.frozen:
                return  # a freeze: both ends stay open and silent (our own cancel, not the loop's)
        dst.transport.abort()  # one side ended (or a cut): end the other
        self._writers.discard(dst)


class RedisServer:
    """A private ``redis-server`` (nothing persisted) this test may kill and restart at will:
    the shared one on 6379 is never restarted."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server (binary)", FileNotFoundError("redis-server"))
        assert binary is not None
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await ``check()`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {getattr(check, '__name__', check)}")
        await asyncio.sleep(interval)
