"""Redis Cluster changing under the store: a slot migration (ASK while it runs, TRYAGAIN for a
script whose keys it split, MOVED once it is done) and the failover of a primary, graceful
(``CLUSTER FAILOVER``) and not (the primary killed; its replica promoted), with a gateway serving
webhooks through it. Each test starts its own cluster on loopback ports and tears it down; every
wait is for a condition (a node's view of the slot map, a key on a replica), bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import pytest
from helpers_cluster import RedisCluster, until

from gateway.errors import StoreError
from gateway.protocols.slots import key_slot
from gateway.stores import Claim, StoreOptions, store_from_url

pytestmark = pytest.mark.slow
PREFIX = "gwt:"


@pytest.fixture
def cluster():
    started = RedisCluster(primaries=3, replicas=0, node_timeout_ms=3000).start()
    yield started
    started.stop()


@pytest.fixture
def replicated():
    """Three primaries with one replica each; a failure is detected after one second."""
    started = RedisCluster(primaries=3, replicas=1, node_timeout_ms=1000).start()
    yield started
    started.stop()


@pytest.fixture
async def store(request):
    cluster = request.getfixturevalue(getattr(request, "param", "cluster"))
    s = store_from_url(cluster.url, StoreOptions(key_prefix=PREFIX, timeout=1.0))
    yield s
    await s.close()


def setslot(cluster: RedisCluster, port: int, *args: object) -> None:
    with cluster.client(port) as c:
        c.execute_command("CLUSTER", "SETSLOT", *args)


def keys_in_slot(cluster: RedisCluster, port: int, slot: int) -> set[str]:
    with cluster.client(port) as c:
        return {k.decode() for k in c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)}


def replica_value(cluster: RedisCluster, port: int, key: str) -> bytes | None:
    with cluster.client(port) as c:
        c.execute_command("READONLY")  # this connection may read the replica's copy
        value: bytes | None = c.get(key)
        return value


def replica_of(cluster: RedisCluster, primary: int) -> int:
    slot = next(s for s, _, p, _ in cluster.slots() if p[1] == primary)
    return next(r for s, _, p, replicas in cluster.slots() if s == slot for _, r in replicas)


# --------------------------------------------------------------------------- slot migration


async def test_ask_while_a_slot_migrates_then_moved_once_it_has(cluster, store):
    tag = "migrating"
    slot = key_slot(tag)
    src = cluster.owner(slot)
    dst = next(p for p in cluster.ports if p != src)
    k1, k2, rate = f"dd:{{{tag}}}:1", f"dd:{{{tag}}}:2", f"rl:prov:{{{tag}}}"
    async with asyncio.timeout(30):
        assert await store.claim(k1, "a", 60) is Claim.CLAIMED
        assert await store.claim(k2, "a", 60) is Claim.CLAIMED
        assert await store.take(rate, 100, 100) == 0.0
        loads = store._pool.refreshes

        setslot(cluster, dst, slot, "IMPORTING", cluster.node_id(src))
        setslot(cluster, src, slot, "MIGRATING", cluster.node_id(dst))
        with cluster.client(src) as c:  # k1 moves now, k2 and the bucket stay for the moment
            c.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", PREFIX + k1)
        assert keys_in_slot(cluster, dst, slot) == {PREFIX + k1}

        assert await store.claim(k1, "b", 60) is Claim.IN_FLIGHT  # -ASK: found on dst
        assert await store.claim(k2, "b", 60) is Claim.IN_FLIGHT  # still on src
        assert await store.claim(f"dd:{{{tag}}}:3", "b", 60) is Claim.CLAIMED  # new: -ASK, made on dst
        assert PREFIX + f"dd:{{{tag}}}:3" in keys_in_slot(cluster, dst, slot)
        assert store._pool.refreshes == loads  # an ASK is for one command: the map stays

        started = time.monotonic()  # the bucket on src, k1 on dst: -TRYAGAIN, bounded retries
        with pytest.raises(StoreError, match="RespError"):
            await store.admit(rate, 100, 100, k1, "c", 60)
        assert time.monotonic() - started < 1.5

        with cluster.client(src) as c:
            c.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", PREFIX + k2, PREFIX + rate)
        for port in (dst, src, *[p for p in cluster.ports if p not in (src, dst)]):
            setslot(cluster, port, slot, "NODE", cluster.node_id(dst))
        await until(lambda: all(cluster.owner(slot, p) == dst for p in cluster.ports), "every node sees the new owner")

        loads = store._pool.refreshes
        assert await store.claim(k2, "c", 60) is Claim.IN_FLIGHT  # -MOVED from src: followed
        assert store._pool.refreshes > loads
        assert store._pool.owners[slot] == ("127.0.0.1", dst)
        assert await store.admit(rate, 100, 100, k1, "c", 60) == (0.0, Claim.IN_FLIGHT)
        await store.commit(k1, "a", 60)
        assert await store.claim(k1, "d", 60) is Claim.DONE
        assert keys_in_slot(cluster, src, slot) == set()


# --------------------------------------------------------------------------- failover


@pytest.mark.parametrize("store", ["replicated"], indirect=True)
async def test_a_graceful_failover_is_followed_through_moved(replicated, store):
    cluster, tag = replicated, "graceful"
    slot = key_slot(tag)
    primary = cluster.owner(slot)
    replica = replica_of(cluster, primary)
    key = f"dd:{{{tag}}}:1"
    async with asyncio.timeout(30):
        assert await store.claim(key, "a", 60) is Claim.CLAIMED
        await store.commit(key, "a", 600)
        await until(lambda: replica_value(cluster, replica, PREFIX + key) == b"D:a", "the replica has the commit")
        with cluster.client(replica) as c:
            c.execute_command("CLUSTER", "FAILOVER")
        await until(lambda: all(cluster.owner(slot, p) == replica for p in cluster.procs), "the replica is primary")
        loads = store._pool.refreshes
        assert await store.claim(key, "b", 60) is Claim.DONE  # the old primary answers -MOVED
        assert store._pool.refreshes > loads
        assert store._pool.owners[slot] == ("127.0.0.1", replica)


async def test_a_killed_primary_is_replaced_and_the_gateway_keeps_serving(replicated, make_gateway, kit):
    """Webhooks keep coming while the primary of ``{stripe}`` dies. Until its replica is elected
    the store fails and dedup's declared policy (closed) answers 503, which a provider retries;
    after, every webhook is forwarded. Every event reaches the upstream exactly once, and an event
    accepted before the failover is still a duplicate after it."""
    cluster = replicated
    slot = key_slot("stripe")
    primary = cluster.owner(slot)
    replica = replica_of(cluster, primary)
    gw = await make_gateway(state={"url": cluster.url, "key_prefix": PREFIX})
    async with asyncio.timeout(60):
        first = kit.stripe_body("evt_before")
        done = await gw.deliver_ok("stripe", first)
        done_key = f"{PREFIX}dd:{{stripe}}:{done['event_id']}"
        await until(lambda: (replica_value(cluster, replica, done_key) or b"").startswith(b"D:"), "replicated")

        cluster.kill(primary)
        pending = [f"evt_{i}" for i in range(40)]
        forwarded, refused = await _deliver_until_done(gw, kit, pending)
        assert cluster.owner(slot) == replica

    print("refused", refused)
    assert refused > 0  # the outage was met, and answered with the declared policy
    assert sorted(forwarded) == sorted(pending)
    ids = [e.event["id"] for e in gw.upstream.events]
    assert len(ids) == len(set(ids)) == 1 + len(pending)  # nothing lost, nothing twice
    assert (await gw.expect(200, "stripe", first))["status"] == "duplicate"
    resp = await gw.client.get("/readyz")
    assert resp.status == 200, await resp.text()


async def _deliver_until_done(gw, kit, pending) -> tuple[list[str], int]:
    """Post each pending event (retrying 503s, as a provider would) until all are forwarded."""
    forwarded: list[str] = []
    refused = 0
    queue = list(pending)
    while queue:
        event = queue.pop(0)
        resp = await gw.post("stripe", kit.stripe_body(event))
        data = await resp.json()
        if resp.status == 200:
            assert data["status"] == "forwarded", data
            forwarded.append(event)
            continue
        assert resp.status == 503 and data["error"]["code"] == "store_unavailable", (resp.status, data)
        assert resp.headers["Retry-After"]
        refused += 1
        queue.append(event)
    return forwarded, refused


async def test_a_primary_that_hangs_is_replaced_and_calls_stay_bounded(replicated):
    """SIGSTOP: the primary's connections stay open and silent (a partition, not a refusal).
    Each call to its slot fails within the store's timeout; calls to other primaries' slots go
    on; once the replica is elected, the map reloaded in the background sends calls there."""
    cluster = replicated
    slot = key_slot("hung")
    primary = cluster.owner(slot)
    replica = replica_of(cluster, primary)
    other = next(p[1] for _, _, p, _ in cluster.slots() if p[1] != primary)
    other_tag = next(f"o{i}" for i in range(10_000) if cluster.owner(key_slot(f"o{i}")) == other)
    s = store_from_url(cluster.url, StoreOptions(key_prefix=PREFIX, timeout=0.5))
    try:
        async with asyncio.timeout(60):
            assert await s.claim("dd:{hung}:0", "a", 60) is Claim.CLAIMED
            cluster.procs[primary].send_signal(signal.SIGSTOP)
            failures, slowest, others_served = 0, 0.0, 0
            while True:
                started = time.monotonic()
                try:
                    assert await s.claim(f"dd:{{hung}}:{failures + 1}", "a", 60) is Claim.CLAIMED
                    break
                except StoreError:
                    failures += 1
                    slowest = max(slowest, time.monotonic() - started)
                    # The other primaries answer until the hung one is marked failed; then, with
                    # cluster-require-full-coverage (the default), -CLUSTERDOWN until the election.
                    with contextlib.suppress(StoreError):
                        assert await s.claim(f"dd:{{{other_tag}}}:{failures}", "a", 60) is Claim.CLAIMED
                        others_served += 1
        assert failures > 0 and slowest < 0.5 + 0.3
        assert others_served > 0
        assert s._pool.owners[slot] == ("127.0.0.1", replica)
    finally:
        cluster.procs[primary].send_signal(signal.SIGCONT)
        await s.close()

