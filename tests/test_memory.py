"""Memory: a rejected request's body is freed when its answer is sent, not at the next collection.

The runner keeps the rejection it caught; a rejection's traceback holds the frames of the stages
it passed through, and those frames hold the request context (body included). The cycle
(exception -> traceback -> frame -> context, and the handler's frame -> exception) left every
rejected body to the cyclic collector. With the collector off, nothing but reference counting
frees memory, so a context still alive after its answer is one such cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

import aiohttp
import helpers_proc as hp
import helpers_services as hs
import pytest

from gateway.errors import Rejection
from gateway.pipeline.context import RequestContext


def alive(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


@pytest.fixture
def no_gc():
    gc.collect()
    gc.disable()
    yield
    gc.enable()
    gc.collect()


@pytest.mark.parametrize(
    "headers",
    [{"Stripe-Signature": "t=1,v1=00"}, {}],  # a stale/invalid signature, a missing one
    ids=["invalid_signature", "missing_signature"],
)
async def test_rejected_contexts_are_freed_by_reference_counting(gateway, kit, no_gc, headers):
    body = b'{"id":"evt_x","pad":"' + b"x" * 200_000 + b'"}'
    before = alive(RequestContext), alive(Rejection)
    for _ in range(40):
        resp = await gateway.post("stripe", body, headers, signed=False)
        assert resp.status == 401
        await resp.read()
    after = alive(RequestContext), alive(Rejection)
    assert after[0] - before[0] <= 1 and after[1] - before[1] <= 1, (before, after)


async def test_the_memory_event_store_is_bounded_in_bytes(kit):
    from datetime import UTC, datetime

    from gateway.events.base import EventFilter, EventRecord
    from gateway.events.memory import MemoryEventStore

    store = MemoryEventStore(max_events=10_000, max_bytes=1024 * 1024)
    for i in range(50):
        body = b"x" * 100_000
        record = EventRecord("stripe", f"evt_{i}", "t", datetime.now(UTC), "delivered", {"a": "b"}, body, body)
        assert await store.insert(record)
    kept = sorted(int(r.event_id[4:]) for r in store._events.values())
    assert store.bytes <= store.max_bytes
    assert 1 <= len(kept) <= 6 and kept[-1] == 49  # ~200 KB each: the newest five fit
    await store.purge(EventFilter())
    assert store.bytes == 0  # the count follows removals too


def test_max_memory_bytes_is_a_setting(kit):
    from gateway.errors import ConfigError

    assert kit.build(kit.config_dict("http://127.0.0.1:9/")).events.max_memory_bytes == 64 * 1024 * 1024
    settings = kit.build(kit.config_dict("http://127.0.0.1:9/", events={"max_memory_bytes": 2 * 1024 * 1024}))
    assert settings.events.max_memory_bytes == 2 * 1024 * 1024
    with pytest.raises(ConfigError, match=r"events\.max_memory_bytes: must be >= 1048576"):
        kit.build(kit.config_dict("http://127.0.0.1:9/", events={"max_memory_bytes": 1000}))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


@pytest.mark.slow
async def test_rss_plateaus_under_a_flood_of_maximum_size_rejected_bodies(tmp_path, kit, upstream):
    """16 clients send 1 MiB bodies with bad signatures for 12 s to a gateway process. Before the
    cycle was broken, every rejected body waited for a full collection: RSS rose by ~165 MiB in a
    second and stayed there after the flood. Now what is held is bounded by what is in flight
    (16 bodies, each read once and then parsed), flat over time, and given back afterwards."""
    port = kit.free_port()
    # No per-source limit: every body goes through signature verification (a 401), as an
    # attacker's flood from many addresses would.
    path = kit.write_config(tmp_path, upstream.url, listen={"port": port}, rate_limits={"per_source": None})
    gw = await hp.GatewayProcess(path, port, tmp_path / "gateway.log").start()
    assert gw.proc is not None
    pid = gw.proc.pid
    limit = kit.build(kit.config_dict(upstream.url)).providers["stripe"].max_body_bytes
    body = b'{"id":"evt_flood","pad":"' + b"x" * (limit - 27) + b'"}'
    assert len(body) == limit  # the largest body the gateway reads
    headers = {"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    samples: list[float] = []
    baseline = rss_mib(pid)
    deadline = asyncio.get_running_loop().time() + 12

    async def client() -> None:
        async with aiohttp.ClientSession() as session:
            while asyncio.get_running_loop().time() < deadline:
                async with session.post(f"{gw.base}{kit.API}/stripe/", data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

    async def sample() -> None:
        while asyncio.get_running_loop().time() < deadline:
            samples.append(rss_mib(pid))
            await asyncio.sleep(0.25)

    try:
        await asyncio.gather(sample(), *(client() for _ in range(16)))
        after = await settled_rss(pid, baseline + 30)
    finally:
        gw.stop()
    assert set(statuses) == {401} and statuses[401] >= 100, statuses  # a real flood (100+ MiB), all refused
    first, second = samples[: len(samples) // 2], samples[len(samples) // 2 :]
    summary = f"baseline {baseline:.0f} MiB, samples {[round(s) for s in samples]}, after {after:.0f} MiB"
    assert max(samples) < baseline + 100, summary  # bounded by the bodies in flight
    assert max(second) < max(first) + 15, summary  # a plateau, not a climb
    assert after < baseline + 30, summary  # given back once the flood stops


async def settled_rss(pid: int, target: float, timeout: float = 5.0) -> float:
    """RSS once it is below ``target`` (polled), or what it is when ``timeout`` runs out."""
    with contextlib.suppress(AssertionError):
        await hs.eventually(lambda: rss_mib(pid) < target, timeout=timeout)
    return rss_mib(pid)
