"""A Redis Cluster client on the lean RESP pool: one ``RespPool`` per node, commands routed by slot.

``redis+cluster://[user:password@]host:port,host:port`` names seed nodes (``rediss+cluster://``
for TLS; the scheme alisaifee/limits and Gitea use). The client asks a node for the slot map
(``CLUSTER SLOTS``: every Redis since 3.0 answers it), sends each command to the primary that owns
its key's slot, and follows the cluster's answers:

- ``-MOVED slot host:port``: the slot has a new owner for good: send there and reload the map;
- ``-ASK slot host:port``: the slot is being migrated and this key already left: send ``ASKING``
  then the command to the target, without touching the map;
- ``-TRYAGAIN`` (a multi-key call caught half-way through a migration) and ``-CLUSTERDOWN``
  (no primary for the slot yet, e.g. during a failover): wait a little, reload, try again;
- a refused or reset connection (a primary died): reload the map from any node that answers
  and try again, so the call lands on the promoted replica once the cluster has elected it.

Every call, redirects and retries included, is bounded by ``timeout`` and at most ``attempts``
sends; then the last error is raised (``RespError``, ``OSError`` or ``TimeoutError``, as from
``RespPool``) and the caller applies its failure policy. A retry after a lost connection may run
a command twice (the reply, not the command, may be what was lost): the caller's commands must
tolerate that (the gateway's scripts do: see ``gateway.stores.redis_cluster``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.protocols.resp import RespError, RespPool
from gateway.protocols.slots import Node, key_slot, parse_cluster_url, parse_slots, routing_key

_BACKOFF = 0.02  # seconds before retrying after a failure; doubles per attempt
_RETRY_LATER = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN")


class ClusterClient:
    """Connections to every node of one Redis Cluster; ``call`` as ``RespPool.call``."""

    def __init__(self, url: str, *, timeout: float = 0.5, attempts: int = 5) -> None:
        self.config = parse_cluster_url(url)
        self.timeout = timeout
        self.attempts = attempts
        self.owners: list[Node | None] = []  # slot -> primary; empty until the first load
        self.refreshes = 0  # how many times the map was loaded (tests and metrics read it)
        self._pools: dict[Node, RespPool] = {}
        self._loading: asyncio.Task[None] | None = None
        self._stale = False  # the map may be out of date: reload it
        self._suspects: set[Node] = set()  # nodes whose last call failed
        self._primaries: list[Node] = []  # the owners in the map, for keyless commands

    async def call(self, *args: Any) -> Any:
        """One command to the primary of its key's slot (any node for a keyless one)."""
        key = routing_key(args)
        slot = None if key is None else key_slot(key if isinstance(key, bytes) else str(key))
        started = asyncio.get_running_loop().time()
        node = self.owners[slot] if slot is not None and self.owners and not self._stale else None
        if node is not None:  # the common case: one send, bounded by the node's pool
            try:
                return await self._send(node, args)
            except TimeoutError:
                raise
            except (RespError, OSError) as exc:
                failure: tuple[BaseException, Node] | None = (exc, node)
        else:
            failure = None
        async with asyncio.timeout_at(started + self.timeout):  # redirects and retries: within it too
            return await self._retry(slot, args, failure)

    async def _retry(self, slot: int | None, args: tuple[Any, ...], failure: tuple[BaseException, Node] | None) -> Any:
        for attempt in range(1 if failure else 0, self.attempts):
            asking = await self._next(*failure, attempt) if failure else None
            if not self.owners:
                await self._load()
            elif self._stale:  # route by the map we have (a wrong owner answers -MOVED) while it reloads
                self._start_load()
            try:
                node = asking or self._owner(slot, attempt)
            except RespError as exc:  # no owner for the slot (yet): as -CLUSTERDOWN
                failure = (exc, self.config.seeds[0])
                continue
            try:
                return await self._send(node, args, asking is not None)
            except TimeoutError:
                raise
            except (RespError, OSError) as exc:
                failure = (exc, node)
        assert failure is not None
        raise failure[0]

    async def _send(self, node: Node, args: tuple[Any, ...], asking: bool = False) -> Any:
        """One send to ``node``; a node that refuses or hangs becomes a suspect (the map reloads)."""
        try:
            pool = self._pool(node)
            reply = await (pool.call_asking(*args) if asking else pool.call(*args))
        except (OSError, asyncio.CancelledError):  # TimeoutError is an OSError
            self._suspects.add(node)
            self._stale = True
            raise
        if self._suspects:
            self._suspects.discard(node)
        return reply

    async def _next(self, exc: BaseException, node: Node, attempt: int) -> Node | None:
        """After a failed attempt: where the next one goes (``None``: the map's owner), after a
        reload or a pause if the failure asks for one; re-raise what no retry can fix."""
        if isinstance(exc, OSError):  # refused or reset: the node may be gone for good
            await self._recover(attempt)
            return None
        word, *rest = str(exc).split(" ")
        if word == "ASK":
            return _address(rest[1], node)
        if word == "MOVED":
            await self._load()
            self.owners[int(rest[0])] = _address(rest[1], node)  # even if the map lags behind
            return None
        if word in _RETRY_LATER:
            await self._recover(attempt)
            return None
        raise exc

    async def _recover(self, attempt: int) -> None:
        """After a failure: wait a little (the cluster may be electing a primary), reload."""
        await asyncio.sleep(_BACKOFF * 2 ** (attempt - 1))
        self._stale = True
        await self._load()

    def _owner(self, slot: int | None, attempt: int = 0) -> Node:
        if slot is None:  # keyless: another primary on each attempt
            if not self._primaries:
                raise RespError("CLUSTERDOWN no slot is served")
            return self._primaries[attempt % len(self._primaries)]
        owner = self.owners[slot]
        if owner is None:
            raise RespError(f"CLUSTERDOWN Hash slot {slot} not served")
        return owner

    async def _load(self) -> None:
        """Reload the slot map and wait for it."""
        await asyncio.shield(self._start_load())

    def _start_load(self) -> asyncio.Task[None]:
        """One load at a time, shared by every caller that needs it (and kept by reference)."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.get_running_loop().create_task(self._load_from_any())
            self._loading.add_done_callback(_retrieve)
        return self._loading

    async def _load_from_any(self) -> None:
        """Ask the nodes we know, then the seeds; nodes that failed lately last."""
        known = [owner for owner in dict.fromkeys(self.owners) if owner is not None]
        candidates = list(dict.fromkeys([*known, *self.config.seeds]))
        error: BaseException = ConnectionError("no node of the cluster answered CLUSTER SLOTS")
        for node in sorted(candidates, key=lambda node: node in self._suspects):
            try:
                reply = await self._pool(node).call("CLUSTER", "SLOTS")
            except (RespError, OSError) as exc:  # TimeoutError included: asked last next time
                self._suspects.add(node)
                error = exc
                continue
            self.owners, self._stale = parse_slots(reply, node), False
            self._primaries = sorted({owner for owner in self.owners if owner is not None})
            self.refreshes += 1
            return
        raise error

    def _pool(self, node: Node) -> RespPool:
        pool = self._pools.get(node)
        if pool is None:  # kept for the client's life: a cluster has few nodes, and in-flight
            # calls may still hold connections of a node that left the map
            url = self.config.node_url(node)
            pool = self._pools[node] = RespPool(url, timeout=self.timeout)
        return pool

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        for pool in self._pools.values():
            await pool.close()


def _retrieve(task: asyncio.Task[None]) -> None:
    """A background load that failed is only a missed refresh; the next call tries again."""
    if not task.cancelled():
        task.exception()


def _address(text: str, asked: Node) -> Node:
    """``host:port`` of a redirect; an empty host is the node that answered."""
    host, _, port = text.rpartition(":")
    return (host.strip("[]") or asked[0], int(port))
