"""Figures for docs/scaling.md: what a Redis primary, the cluster client and one replica cost.

    .venv/bin/python bench/scaling_probe.py [--seconds 5] [--concurrency 64] [--skip-failover]

Everything runs on loopback against private servers this script starts and stops (a
``redis-server`` and, for the cluster parts, 3 primaries with a replica each, built by
``tests/helpers_cluster.py``). It measures, with the gateway's own store code:

1. **Redis server CPU per webhook**: a webhook costs the store three script calls (source
   ``take``, fused ``admit``, ``commit``). The server's own CPU time (``INFO cpu``) over the calls
   it ran (``INFO commandstats``), so other load on the machine hardly moves it.
2. **Gateway-side CPU per store call** (``time.process_time`` of this process over the calls made),
   under the webhook mix against one server and against a 3-primary cluster, and an A/B of the
   same GET on the same node through ``RespPool`` and through ``ClusterClient``: what routing adds.
3. **Redis memory per remembered event id** (``used_memory`` before and after N committed ids
   with Stripe-shaped ids under the default prefix).
4. **memory:// bytes per remembered id** in one gateway process (``tracemalloc``).
5. **Failover**: a primary killed (``cluster-node-timeout`` 1000 and 3000 ms); seconds from the
   kill to the first successful call on its slot, calling every 10 ms.
6. **PostgreSQL per queue-mode webhook** (``scaling_pg.py``, on a scratch database of the server
   at ``--pg-dsn``): server CPU and WAL bytes of the insert and of the delivered-mark, and the
   disk an event takes. ``--only-postgres`` runs this part alone.

Prints a JSON document; ``bench/results/scaling-<UTC time>.json`` keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers_cluster import RedisCluster  # noqa: E402
from helpers_services import PG_ADMIN_DSN, RedisServer  # noqa: E402
from scaling_pg import probe as postgres_probe  # noqa: E402

from gateway.stores import StoreOptions, store_from_url  # noqa: E402
from gateway.stores.memory import MemoryStore  # noqa: E402


def server_stats(port: int) -> tuple[float, int]:
    """(server CPU seconds, EVALSHA+EVAL calls) of one node."""
    import redis

    with redis.Redis(port=port) as c:
        cpu = c.info("cpu")
        calls = c.info("commandstats")
    evals = sum(int(calls.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), evals


async def webhook_load(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    """Each worker: take (source), admit (provider rate + claim), commit, as the pipeline does."""
    store = store_from_url(url, StoreOptions(key_prefix="whgw:", timeout=2.0))
    done = 0
    stop = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            provider = f"p{(n + i) % 16}"  # 16 providers: spread over the cluster's primaries
            event = f"evt_{n:03d}{i:09d}{'x' * 12}"
            await store.take(f"rl:src:{{10.0.{n}.1}}", 1e9, 10**9)
            await store.admit(f"rl:prov:{{{provider}}}", 1e9, 10**9, f"dd:{{{provider}}}:{event}", "t", 60)
            await store.commit(f"dd:{{{provider}}}:{event}", "t", 259200)
            done += 1
            i += 1

    await store.take("warm", 1, 1)
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    await store.close()
    return {"webhooks": done, "wall_s": wall, "client_cpu_us_per_call": cpu / (3 * done) * 1e6}


def measure_server(seconds: float, concurrency: int) -> dict[str, Any]:
    server = RedisServer().start()
    try:
        cpu0, calls0 = server_stats(server.port)
        load = asyncio.run(webhook_load(server.url, seconds, concurrency))
        cpu1, calls1 = server_stats(server.port)
        calls = calls1 - calls0
        per_call = (cpu1 - cpu0) / calls * 1e6
        load.update(server_cpu_us_per_call=per_call, server_cpu_us_per_webhook=3 * per_call, script_calls=calls)
        load["memory"] = memory_per_id(server.port)
        return load
    finally:
        server.kill()


def memory_per_id(port: int, n: int = 100_000) -> dict[str, float]:
    """used_memory growth per committed id, ids and TTLs as the gateway writes them."""
    import redis

    with redis.Redis(port=port) as c:
        c.flushall()
        before = int(c.info("memory")["used_memory"])
        pipe = c.pipeline(transaction=False)
        for i in range(n):
            pipe.set(f"whgw:dd:{{stripe}}:evt_1Nabc{i:018d}", "D:0123456789abcdef", px=259_200_000)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        after = int(c.info("memory")["used_memory"])
    return {"ids": n, "bytes_per_id": (after - before) / n}


def measure_cluster(seconds: float, concurrency: int) -> dict[str, Any]:
    cluster = RedisCluster(primaries=3, replicas=0, node_timeout_ms=3000).start()
    try:
        result = asyncio.run(webhook_load(cluster.url, seconds, concurrency))
        result["routing_overhead"] = asyncio.run(routing_overhead(cluster))
        return result
    finally:
        cluster.stop()


async def routing_overhead(cluster: RedisCluster, calls: int = 20_000, concurrency: int = 16) -> dict[str, float]:
    """Client CPU per GET on one node: straight through its RespPool vs routed by ClusterClient
    (same node, same key, alternating 3 times; medians)."""
    from gateway.protocols.cluster import ClusterClient
    from gateway.protocols.resp import RespPool
    from gateway.protocols.slots import key_slot

    direct = RespPool(f"redis://127.0.0.1:{cluster.owner(key_slot('a'))}/0")
    routed = ClusterClient(cluster.url)

    async def run(client: Any) -> float:
        async def worker() -> None:
            for _ in range(calls // concurrency):
                await client.call("GET", "{a}x")

        await client.call("GET", "{a}x")
        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (time.process_time() - cpu) / calls * 1e6

    pairs = [(await run(direct), await run(routed)) for _ in range(3)]
    await direct.close()
    await routed.close()
    pool_us, cluster_us = (sorted(x)[1] for x in zip(*pairs, strict=True))
    return {"resp_pool_cpu_us_per_call": pool_us, "cluster_client_cpu_us_per_call": cluster_us}


def memory_store_bytes(n: int = 200_000) -> dict[str, float]:
    async def fill() -> None:
        for i in range(n):
            key = f"dd:{{stripe}}:evt_1Nabc{i:018d}"
            await store.claim(key, "0123456789abcdef", 60)
            await store.commit(key, "0123456789abcdef", 259200)

    store = MemoryStore("memory://", max_entries=n)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    asyncio.run(fill())
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"ids": n, "bytes_per_id": (after - before) / n}


async def outage(cluster: RedisCluster, slot_tag: str) -> float:
    from gateway.protocols.slots import key_slot

    store = store_from_url(cluster.url, StoreOptions(key_prefix="probe:", timeout=0.5))
    await store.claim(f"dd:{{{slot_tag}}}:0", "t", 60)
    cluster.kill(cluster.owner(key_slot(slot_tag)))
    killed, i = time.monotonic(), 0
    async with asyncio.timeout(120):
        while True:
            i += 1
            try:
                await store.claim(f"dd:{{{slot_tag}}}:{i}", "t", 60)
                break
            except Exception:
                await asyncio.sleep(0.01)
    await store.close()
    return time.monotonic() - killed


def measure_failover(node_timeout_ms: int) -> float:
    cluster = RedisCluster(primaries=3, replicas=1, node_timeout_ms=node_timeout_ms).start()
    try:
        return asyncio.run(outage(cluster, "stripe"))
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--pg-dsn", default=PG_ADMIN_DSN, help="a superuser DSN of a PostgreSQL on this host")
    parser.add_argument("--pg-events", type=int, default=20_000, help="events inserted and delivered")
    parser.add_argument("--only-postgres", action="store_true", help="skip the Redis parts")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg()},
    }
    if not args.only_postgres:
        result["single_redis"] = measure_server(args.seconds, args.concurrency)
        result["cluster_3_primaries"] = measure_cluster(args.seconds, args.concurrency)
        result["memory_store"] = memory_store_bytes()
    if not (args.skip_failover or args.only_postgres):
        result["failover_s"] = {str(ms): measure_failover(ms) for ms in (1000, 3000)}
    result["postgres_queue_mode"] = asyncio.run(postgres_probe(args.pg_dsn, args.pg_events))
    result["machine"]["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    out = ROOT / "bench" / "results" / f"scaling-{result['when'].replace(':', '').replace('-', '')}.json"
    out.write_text(text + "\n", "utf-8")
    print(text)


if __name__ == "__main__":
    main()
