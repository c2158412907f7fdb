"""Two gateway processes sharing one Redis act as one gateway: one forward per event, one budget.

Each gateway is ``python -m gateway run --config F`` on its own port; the upstream is a process
of its own (``helpers_proc.py``). Sync mode, so a copy's answer depends on the other process's
claim in Redis, not on a database constraint.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import helpers_proc as hp
import helpers_services as hs
import pytest

from gateway.providers.signer import sign

redis_state = hs.redis_state  # fixture
PATH = "/payments/api/webhooks/stripe/"


@pytest.fixture
async def upstream_proc(tmp_path):
    up = await hp.UpstreamProcess(hs.free_port(), tmp_path / "upstream.log").start()
    yield up
    up.stop()


@pytest.fixture
def two_gateways(tmp_path, kit, upstream_proc, redis_state):
    """``await two_gateways(**overrides)``: two processes, one config but the port; returns them
    and a function that signs a body as Stripe would for them."""
    started: list[hp.GatewayProcess] = []

    async def make(**overrides):
        state = {**redis_state, "timeout": 2.0}  # three processes share one CPU in CI
        common = dict(state=state, rate_limits={"per_source": False}, logging={"level": "warning"}, **overrides)
        settings = kit.build(kit.config_dict(upstream_proc.url, **common))
        spec, url = settings.providers["stripe"], settings.webhook_url("stripe")
        for i in range(2):
            port = hs.free_port()
            config = kit.write_config(tmp_path, upstream_proc.url, f"gw{i}.yaml", listen={"port": port}, **common)
            started.append(hp.GatewayProcess(config, port, tmp_path / f"gw{i}.log"))
        await asyncio.gather(*(g.start() for g in started))
        return started, lambda body: sign(spec, body, url)

    yield make
    for g in started:
        g.stop()


async def test_200_copies_across_two_processes_are_forwarded_once(two_gateways, upstream_proc, kit):
    gateways, headers_for = await two_gateways()
    await upstream_proc.mode(delay=0.2)  # copies overlap the first delivery
    body = kit.stripe_body("evt_mp_once")
    headers = headers_for(body)

    async def one(session, i):
        async with session.post(gateways[i % 2].base + PATH, data=body, headers=headers) as resp:
            data = await resp.json()
            return resp.status, data.get("status") or data["error"]["code"]

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        results = Counter(await asyncio.gather(*(one(session, i) for i in range(200))))
    assert await upstream_proc.counts() == {"evt_mp_once": 1}
    assert (await upstream_proc.state())["attempts"] == 1
    assert results[(200, "forwarded")] == 1, results
    # Every other copy is a duplicate or told to retry (409 while in flight; 503 only if Redis
    # itself was too slow to answer on a loaded machine): never a second forward, never a 4xx/500.
    retryable = {(409, "in_flight"), (503, "store_unavailable")}
    assert set(results) <= {(200, "forwarded"), (200, "duplicate"), *retryable}, results
    assert results[(200, "duplicate")] >= 100, results


async def test_the_provider_rate_limit_is_shared_by_both_processes(two_gateways, kit):
    rate, burst, duration = 20, 20, 2.0
    gateways, headers_for = await two_gateways(providers={"stripe": {"rate_limit": {"rate": rate, "burst": burst}}})
    n = 200  # 100/s offered, five times the allowed rate, alternating between the processes
    statuses: list[tuple[float, int, str | None]] = []

    async def one(session, i, at):
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        body = kit.stripe_body(f"evt_mp_rate_{i}")
        sent = time.monotonic()
        async with session.post(gateways[i % 2].base + PATH, data=body, headers=headers_for(body)) as resp:
            await resp.read()
            statuses.append((sent, resp.status, resp.headers.get("Retry-After")))

    start = time.monotonic() + 0.1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(one(session, i, start + i * duration / n) for i in range(n)))
    accepted = sum(1 for _, s, _ in statuses if s == 200)
    limited = [r for r in statuses if r[1] == 429]
    assert accepted + len(limited) == n, Counter(s for _, s, _ in statuses)
    assert all(r[2] and int(r[2]) >= 1 for r in limited)
    span = max(t for t, _, _ in statuses) - min(t for t, _, _ in statuses)
    expected = burst + rate * span
    print(f"\nshared rate limit: accepted {accepted} of {n} over {span:.2f} s; expected {expected:.1f} "
          f"({100 * (accepted - expected) / expected:+.1f}%)")  # fmt: skip
    assert abs(accepted - expected) <= 0.2 * expected
    # Each process alone would have allowed about this many: the budget was not doubled.
    assert accepted < 2 * burst + rate * span * 1.5
