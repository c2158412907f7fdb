"""The store contract on real Redis, plus what only a shared, networked store can get wrong.

The contract classes are the ones ``test_stores_memory.py`` runs on ``memory://``; imported here,
they run again with this module's ``store`` fixture: Redis DB 7 under a key prefix of the test's
own. Then: prefix isolation, two instances acting as two replicas, the exact keys and TTLs the
Lua scripts leave, and failures (closed port, a server that never answers, a restart) surfacing
as ``StoreError`` with ``ping()`` False, fast.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import helpers_services as hs
import pytest
from test_stores_memory import (  # noqa: F401
    TestAdmitContract,
    TestDedupContract,
    TestHealthContract,
    TestRateLimitContract,
)

from gateway.stores import Claim, StoreError, StoreOptions, store_from_url
from gateway.stores.redis import RedisStore

redis_state, private_redis = hs.redis_state, hs.private_redis  # fixtures


@pytest.fixture(params=["redis"])
async def store(redis_state):
    s = store_from_url(redis_state["url"], StoreOptions(key_prefix=redis_state["key_prefix"]))
    yield s
    await s.close()


@pytest.fixture(params=["memory", "redis"])
async def any_store(request, redis_state):
    url = "memory://" if request.param == "memory" else redis_state["url"]
    s = store_from_url(url, StoreOptions(key_prefix=redis_state["key_prefix"]))
    yield s
    await s.close()


@pytest.fixture
def key() -> str:
    return f"dd:{{test}}:{uuid.uuid4().hex}"


# --------------------------------------------------------------------------- both backends


async def test_tokens_decide_who_may_settle(any_store, key):
    assert await any_store.claim(key, "a", 5) is Claim.CLAIMED
    assert await any_store.claim(key, "b", 5) is Claim.IN_FLIGHT
    await any_store.release(key, "b")  # not b's lease: nothing happens
    assert await any_store.claim(key, "b", 5) is Claim.IN_FLIGHT
    await any_store.commit(key, "a", 60)
    assert await any_store.claim(key, "b", 5) is Claim.DONE
    await any_store.release(key, "a")  # a done id is never released back
    assert await any_store.claim(key, "b", 5) is Claim.DONE


async def test_a_retried_claim_with_the_same_token_is_still_ours(any_store, key):
    # A call whose reply timed out may have run: its retry must not wait on itself (a 409).
    assert await any_store.claim(key, "a", 5) is Claim.CLAIMED
    assert await any_store.claim(key, "a", 5) is Claim.CLAIMED
    assert await any_store.claim(key, "b", 5) is Claim.IN_FLIGHT
    assert (await any_store.admit("rl:prov:{x}", 100.0, 10, key, "a", 5)) == (0.0, Claim.CLAIMED)
    await any_store.commit(key, "a", 60)
    assert await any_store.claim(key, "a", 5) is Claim.DONE


async def test_a_lease_expires_and_the_id_is_free_again(any_store, key):
    assert await any_store.claim(key, "a", 0.4) is Claim.CLAIMED
    assert await any_store.claim(key, "b", 5) is Claim.IN_FLIGHT
    await asyncio.sleep(0.5)
    assert await any_store.claim(key, "b", 5) is Claim.CLAIMED


async def test_gcra_burst_then_one_per_interval(any_store, key):
    rate, burst = 10.0, 5
    started = time.monotonic()
    assert [await any_store.take(key, rate, burst) for _ in range(burst)] == [0.0] * burst
    retry_after = await any_store.take(key, rate, burst)
    elapsed = time.monotonic() - started  # the bucket refills while we take: 1/rate minus that
    assert 1 / rate - elapsed - 0.005 <= retry_after <= 1 / rate + 0.005
    await asyncio.sleep(retry_after + 0.01)
    assert await any_store.take(key, rate, burst) == 0.0
    assert await any_store.take(key, rate, burst) > 0  # one token came back, not a new burst


def test_gcra_never_counts_more_than_a_full_bucket_ahead():
    """A clock that steps back (a failed-over primary whose clock is behind) leaves a stored time
    far ahead: the wait is one interval at most, not the size of the step."""
    from gateway.stores.base import gcra

    tat, wait = gcra(1000.0 + 3600, 1000.0, rate=10.0, burst=10)
    assert 0 < wait <= 0.1 + 1e-9
    assert gcra(tat, 1000.0 + wait, rate=10.0, burst=10)[1] == 0.0  # then allowed, not refused again


# --------------------------------------------------------------------------- Redis only


async def test_a_rate_time_far_ahead_costs_one_interval_at_most(store, redis_state, key):
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(redis_state["url"])
    await raw.set(redis_state["key_prefix"] + key, f"{time.time() + 3600:.6f}")  # as the Lua script writes it
    await raw.aclose()
    wait = await store.take(key, 10.0, 10)
    assert 0 < wait <= 0.1 + 0.005  # it was 3599.1 s
    await hs.eventually(lambda: _allowed(store, key), timeout=2)  # and allowed once it has passed


async def _allowed(store, key: str) -> bool:
    return await store.take(key, 10.0, 10) == 0.0


async def test_keys_values_and_ttls_on_the_server(store, redis_state, key):
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(redis_state["url"])  # an independent client: the server's view
    full = redis_state["key_prefix"] + key
    await store.claim(key, "tok1", 2.0)
    assert await raw.get(full) == b"F:tok1"
    assert 1500 < await raw.pttl(full) <= 2000
    await store.commit(key, "tok1", 30.0)
    assert await raw.get(full) == b"D:tok1"
    assert 29_000 < await raw.pttl(full) <= 30_000
    await store.take("rl:prov:{stripe}", 5, 2)
    assert 0 < await raw.pttl(redis_state["key_prefix"] + "rl:prov:{stripe}") <= 1250
    await raw.aclose()


async def test_prefixes_isolate_and_equal_prefixes_share(redis_state, key):
    url, prefix = redis_state["url"], redis_state["key_prefix"]
    a, b = RedisStore(url, prefix=prefix + "a:"), RedisStore(url, prefix=prefix + "b:")
    a2 = RedisStore(url, prefix=prefix + "a:")  # a second replica of "a"
    try:
        assert await a.claim(key, "t1", 5) is Claim.CLAIMED
        assert await b.claim(key, "t2", 5) is Claim.CLAIMED
        assert await a2.claim(key, "t3", 5) is Claim.IN_FLIGHT
        assert await a.take(key, 1, 1) == 0.0
        assert await a2.take(key, 1, 1) > 0  # one bucket for both replicas
        assert await b.take(key, 1, 1) == 0.0
    finally:
        for s in (a, b, a2):
            await s.close()


async def test_two_replicas_racing_for_one_id_have_one_winner(redis_state, key):
    replicas = [RedisStore(redis_state["url"], prefix=redis_state["key_prefix"]) for _ in range(2)]
    try:
        claims = [replicas[i % 2].claim(key, f"t{i}", 5) for i in range(100)]
        results = await asyncio.gather(*claims)
        assert results.count(Claim.CLAIMED) == 1
        assert results.count(Claim.IN_FLIGHT) == 99
    finally:
        for s in replicas:
            await s.close()


async def test_store_from_url_takes_prefix_and_timeout_from_options(redis_state):
    s = store_from_url(redis_state["url"], StoreOptions(key_prefix="pfx:", timeout=0.25))
    try:
        assert isinstance(s, RedisStore)
        assert s.prefix == "pfx:"
        assert s._pool.timeout == 0.25
    finally:
        await s.close()


async def _every_operation_fails(s: RedisStore, within: float) -> None:
    started = time.monotonic()
    for op in (s.claim("k", "t", 1), s.commit("k", "t", 1), s.release("k", "t"), s.take("k", 1, 1)):
        with pytest.raises(StoreError) as info:
            await op
        assert "redis" in str(info.value)
    assert await s.ping() is False
    assert time.monotonic() - started < within


async def test_a_closed_port_is_a_store_error_and_not_ready():
    s = RedisStore(f"redis://127.0.0.1:{hs.free_port()}/0", timeout=0.5)
    try:
        await _every_operation_fails(s, within=2.0)
    finally:
        await s.close()


async def test_a_server_that_never_answers_times_out_as_a_store_error():
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing back, answer nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        await _every_operation_fails(s, within=5 * 0.2 + 1.0)
    finally:
        await s.close()
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_restarted_redis_is_used_again_without_a_new_store(private_redis, key):
    s = RedisStore(private_redis.url, timeout=0.5)
    try:
        assert await s.claim(key, "a", 60) is Claim.CLAIMED
        private_redis.kill()
        with pytest.raises(StoreError):
            await s.claim(key, "b", 60)
        assert await s.ping() is False
        private_redis.start()  # same port, empty data, empty script cache (NOSCRIPT -> reload)
        failures = 0
        for _ in range(3):  # a pooled connection to the old server may fail once
            try:
                assert await s.claim(key, "c", 60) is Claim.CLAIMED  # the lease went with the data
                break
            except StoreError:
                failures += 1
        assert failures <= 1
        assert await s.ping() is True
        assert await s.take(key + ":rl", 10, 1) == 0.0
    finally:
        await s.close()


async def test_a_burst_of_concurrent_calls_shares_the_pipelined_connection_without_failing(redis_state):
    s = RedisStore(redis_state["url"], prefix=redis_state["key_prefix"])
    try:
        results = await asyncio.gather(*(s.claim(f"burst:{i}", "t", 5) for i in range(400)), return_exceptions=True)
        assert results == [Claim.CLAIMED] * 400  # not "Too many connections" as StoreError
    finally:
        await s.close()


class CountingRedisStore(RedisStore):
    """The real Redis store, counting its round trips (each method is one script call)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    async def _call(self, script, key, *args):
        self.calls.append(next(name for name in ("claim", "commit", "release", "take", "admit")
                               if getattr(self, f"_{name}") is script))  # fmt: skip
        return await super()._call(script, key, *args)


async def test_a_webhook_costs_three_redis_round_trips(aiohttp_client, make_settings, redis_state, kit):
    """Source rate limit (before verification), provider rate limit + claim fused in one Lua call,
    commit after forwarding: three round trips, the least the pipeline's order allows."""
    from gateway.app import build_app, build_services

    settings = make_settings(state=redis_state)
    services = build_services(settings)
    await services.store.close()
    services.store = store = CountingRedisStore(redis_state["url"], prefix=redis_state["key_prefix"], timeout=2)
    client = await aiohttp_client(build_app(settings, services))
    body = kit.stripe_body("evt_round_trips")
    from gateway.providers.signer import sign

    headers = sign(settings.providers["stripe"], body, settings.webhook_url("stripe"))
    resp = await client.post("/payments/api/webhooks/stripe/", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert store.calls == ["take", "admit", "commit"]

    store.calls.clear()  # a retry of the same event: the fused call finds it done, nothing else
    resp = await client.post("/payments/api/webhooks/stripe/", data=body, headers=headers)
    assert (await resp.json())["status"] == "duplicate"
    assert store.calls == ["take", "admit"]


async def test_a_password_in_the_url_authenticates_and_a_wrong_one_is_a_store_error(private_redis, key):
    import redis.asyncio as aioredis

    admin = aioredis.Redis.from_url(private_redis.url)
    await admin.config_set("requirepass", "s3cr3t/pw")
    await admin.aclose()
    host_port = private_redis.url.removeprefix("redis://").split("/")[0]
    good = RedisStore(f"redis://:s3cr3t%2Fpw@{host_port}/3", timeout=0.5)
    bad = RedisStore(f"redis://:wrong@{host_port}/0", timeout=0.5)
    try:
        assert await good.claim(key, "a", 60) is Claim.CLAIMED
        check = aioredis.Redis.from_url(f"redis://:s3cr3t%2Fpw@{host_port}/3")
        assert await check.exists("whgw:" + key) == 1  # in the database the URL names
        await check.aclose()
        with pytest.raises(StoreError):
            await bad.claim(key, "b", 60)
        assert await bad.ping() is False
    finally:
        await good.close()
        await bad.close()


async def test_scripts_are_loaded_again_after_a_script_flush(redis_state, key):
    import redis.asyncio as aioredis

    s = RedisStore(redis_state["url"], prefix=redis_state["key_prefix"], timeout=1.0)
    admin = aioredis.Redis.from_url(redis_state["url"])
    try:
        assert await s.claim(key, "a", 60) is Claim.CLAIMED
        await admin.script_flush()  # NOSCRIPT on the next EVALSHA: EVAL loads it again
        assert await s.claim(key, "b", 60) is Claim.IN_FLIGHT
        assert await s.take(key + ":rl", 10, 1) == 0.0
    finally:
        await admin.aclose()
        await s.close()


async def test_a_remote_store_runs_admit_as_one_stage_and_memory_runs_two(make_settings, redis_state):
    """The fused rate limit + claim is a stage of the list (not work deferred through the
    context): with Redis one ``admit`` stands where ``provider_rate`` and ``dedup`` stand in memory."""
    from gateway.app import build_services
    from gateway.pipeline.stage import default_stages

    for state, expected in (
        (redis_state, ["identify", "admit", "normalize"]),
        ({"url": "memory://"}, ["identify", "provider_rate", "dedup", "normalize"]),
    ):
        services = build_services(make_settings(state=state))
        names = [stage.name for stage in default_stages(services)]
        await services.store.close()
        start = names.index("identify")
        assert names[start : start + len(expected)] == expected, names
