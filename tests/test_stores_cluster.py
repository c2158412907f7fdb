"""The store on a real Redis Cluster: three primaries on loopback ports, started for this module.

The contract classes of ``test_stores_memory.py`` (and the cross-backend tests of
``test_stores_redis.py``) run again with a ``store`` on ``redis+cluster://``. Then what only a
cluster can get wrong: the slot of a key (checked against the server's own ``CLUSTER KEYSLOT``),
keys landing on the primary that owns their slot across all three primaries, scripts loaded per
node, the URL and prefix checks of the config loader, and a gateway serving webhooks through it.
Migrations and failover, which change the cluster, are in ``test_stores_cluster_faults.py``.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import helpers_services as hs
import pytest
from helpers_cluster import RedisCluster
from test_stores_memory import (  # noqa: F401
    TestAdmitContract,
    TestDedupContract,
    TestHealthContract,
    TestRateLimitContract,
)
from test_stores_redis import (  # noqa: F401
    test_a_lease_expires_and_the_id_is_free_again,
    test_gcra_burst_then_one_per_interval,
    test_tokens_decide_who_may_settle,
)

from gateway.errors import ConfigError
from gateway.protocols.slots import key_slot, parse_cluster_url, routing_key
from gateway.secrets import mask_url
from gateway.stores import Claim, StoreError, StoreOptions, store_from_url
from gateway.stores.redis_cluster import RedisClusterStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    started = RedisCluster(primaries=3, replicas=0, node_timeout_ms=3000).start()
    yield started
    started.stop()


@pytest.fixture
def prefix() -> str:
    return f"gwtest:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def store(cluster, prefix):
    s = store_from_url(cluster.url, StoreOptions(key_prefix=prefix))
    yield s
    await s.close()


any_store = store  # the cross-backend tests of test_stores_redis.py, on the cluster


@pytest.fixture
def key() -> str:
    return f"dd:{{test}}:{uuid.uuid4().hex}"


def tags_on_every_primary(cluster: RedisCluster) -> dict[int, str]:
    """Primary port -> a hash tag whose slot it owns."""
    found: dict[int, str] = {}
    for i in range(10_000):
        found.setdefault(cluster.owner(key_slot(f"p{i}")), f"p{i}")
        if len(found) == 3:
            return found
    raise AssertionError("no tag for some primary")


# --------------------------------------------------------------------------- slots and URLs


def test_key_slot_agrees_with_the_server(cluster):
    keys = ["foo", "", "{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap",
            "foo{bar}{zap}", "{}", "}{", "a{b", "dd:{stripe}:evt_1", "rl:src:{2001:db8::/64}", "ключ", "x" * 300]
    keys += [f"whgw:dd:{{p{i}}}:{uuid.uuid4().hex}" for i in range(200)]  # fmt: skip
    with cluster.client(cluster.ports[0]) as c:
        for k in keys:
            assert key_slot(k) == c.execute_command("CLUSTER", "KEYSLOT", k), k
            assert key_slot(k.encode()) == key_slot(k)


def test_routing_key_finds_the_key_of_each_command():
    assert routing_key(("EVALSHA", "ab12", 2, "k1", "k2", "arg")) == "k1"
    assert routing_key(("EVAL", "return 1", 0)) is None
    assert routing_key(("GET", "k")) == "k"
    assert routing_key(("PING",)) is None
    assert routing_key(("CLUSTER", "INFO")) is None


def test_cluster_urls_parse_and_bad_ones_say_why():
    parsed = parse_cluster_url("rediss+cluster://user:p%40ss@10.0.0.1:7000,[2001:db8::1]:7001,cache/0")
    assert parsed.tls and parsed.seeds == (("10.0.0.1", 7000), ("2001:db8::1", 7001), ("cache", 6379))
    assert parsed.node_url(("2001:db8::1", 7001)) == "rediss://user:p%40ss@[2001:db8::1]:7001/0"
    assert parse_cluster_url("redis+cluster://h:1").node_url(("h", 1)) == "redis://h:1/0"
    for url, message in (
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://:pw@", "no seed node"),
        ("redis+cluster://h:7000,h:port", "not a host:port: 'h:port'"),
        ("redis+cluster://h:70000", "not a host:port"),
        ("redis://h:7000", "not a redis+cluster://"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_cluster_url(url)


def test_the_loader_refuses_a_bad_cluster_url_or_a_braced_prefix(make_settings):
    with pytest.raises(ConfigError) as info:
        make_settings(state={"url": "redis+cluster://:secretpw@h:7000,h:x"})
    assert "state.url" in str(info.value) and "not a host:port" in str(info.value)
    assert "secretpw" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_settings(state={"url": "redis+cluster://h:7000", "key_prefix": "{gw}:"})
    assert "state.key_prefix" in str(info.value) and "{ or }" in str(info.value)
    settings = make_settings(state={"url": "rediss+cluster://:pw@h:7000,h:7001", "key_prefix": "gw:"})
    assert settings.state.url.startswith("rediss+cluster://")
    assert mask_url(settings.state.url) == "rediss+cluster://***@h:7000,h:7001"


# --------------------------------------------------------------------------- routing


async def test_keys_land_on_the_primary_that_owns_their_slot_on_all_three(cluster, store, prefix):
    tags = tags_on_every_primary(cluster)
    assert len(set(tags)) == 3
    for port, tag in tags.items():
        claim_key, rate_key = f"dd:{{{tag}}}:evt_1", f"rl:prov:{{{tag}}}"
        assert await store.admit(rate_key, 10, 5, claim_key, "t1", 30) == (0.0, Claim.CLAIMED)
        await store.commit(claim_key, "t1", 60)
        for node in cluster.ports:  # on the owner, and only there
            with cluster.client(node) as c:
                held = {k.decode() for k in c.execute_command("CLUSTER", "GETKEYSINSLOT", key_slot(tag), 1000)}
            mine = {k for k in held if k.startswith(prefix)}
            assert mine == ({prefix + claim_key, prefix + rate_key} if node == port else set()), (node, port)
        with cluster.client(port) as c:
            assert c.get(prefix + claim_key) == b"D:t1"
    assert store._pool.refreshes == 1  # one map, loaded once: no redirect on the way


async def test_scripts_are_loaded_on_each_node_after_a_flush(cluster, store):
    tags = tags_on_every_primary(cluster)
    for tag in tags.values():
        assert await store.claim(f"dd:{{{tag}}}:a", "t", 30) is Claim.CLAIMED
    for port in cluster.ports:
        with cluster.client(port) as c:
            c.execute_command("SCRIPT", "FLUSH")
    for tag in tags.values():  # NOSCRIPT on every primary: EVAL there, then EVALSHA again
        assert await store.claim(f"dd:{{{tag}}}:a", "u", 30) is Claim.IN_FLIGHT
        assert await store.claim(f"dd:{{{tag}}}:b", "u", 30) is Claim.CLAIMED


async def test_many_concurrent_calls_share_one_map_load(cluster, prefix):
    s = RedisClusterStore(cluster.url, prefix=prefix, timeout=2.0)
    try:
        results = await asyncio.gather(*(s.claim(f"dd:{{p{i}}}:x", "t", 30) for i in range(300)))
        assert results == [Claim.CLAIMED] * 300
        assert s._pool.refreshes == 1
    finally:
        await s.close()


async def test_ping_is_true_on_a_healthy_cluster_and_false_without_one(cluster):
    s = store_from_url(cluster.url)
    dead = store_from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2", StoreOptions(timeout=0.3))
    try:
        assert await s.ping() is True
        assert await dead.ping() is False
    finally:
        await s.close()
        await dead.close()


async def test_a_seed_that_is_down_is_skipped(cluster, prefix):
    url = f"redis+cluster://127.0.0.1:1,127.0.0.1:{cluster.ports[2]}"
    s = store_from_url(url, StoreOptions(key_prefix=prefix))
    try:
        assert await s.claim("dd:{x}:1", "t", 30) is Claim.CLAIMED
    finally:
        await s.close()


async def test_a_seed_that_hangs_costs_the_first_call_only(cluster, prefix):
    """The first seed accepts connections and never answers (a partition). The first call fails
    at its timeout; the map load it started goes on to the next seed in the background, and the
    hung seed is asked last from then on."""
    proxy = await hs.TcpProxy("127.0.0.1", cluster.ports[0]).start()
    await proxy.freeze()
    url = f"redis+cluster://127.0.0.1:{proxy.port},127.0.0.1:{cluster.ports[1]}"
    s = store_from_url(url, StoreOptions(key_prefix=prefix, timeout=0.3))
    try:
        async with asyncio.timeout(10):
            with pytest.raises(StoreError):
                await s.claim("dd:{x}:1", "t", 30)
            await hs.eventually(lambda: len(s._pool.owners) == 16384)
            assert await s.claim("dd:{x}:1", "t", 30) is Claim.CLAIMED
            assert ("127.0.0.1", proxy.port) in s._pool._suspects
    finally:
        await s.close()
        await proxy.cut()


# --------------------------------------------------------------------------- the gateway


async def test_a_gateway_on_the_cluster_forwards_once_and_answers_duplicates(cluster, make_gateway, kit, prefix):
    gw = await make_gateway(state={"url": cluster.url, "key_prefix": prefix, "timeout": 2.0})
    body = kit.stripe_body("evt_cluster_1")
    await gw.deliver_ok("stripe", body)
    assert (await gw.expect(200, "stripe", body))["status"] == "duplicate"
    resp = await gw.client.get("/readyz")
    assert resp.status == 200, await resp.text()
    slot = key_slot("stripe")
    with cluster.client(cluster.owner(slot)) as c:
        keys = [k.decode() for k in c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)]
    assert any(k.startswith(prefix + "dd:{stripe}:") for k in keys)
    assert prefix + "rl:prov:{stripe}" in keys


# --------------------------------------------------------------------------- TLS


async def test_rediss_cluster_speaks_tls_and_authenticates_to_every_node(monkeypatch):
    """``rediss+cluster://:password@``: a cluster that listens (and gossips and replicates) over
    TLS only and wants a password, its certificates issued by a CA the process trusts
    (``SSL_CERT_FILE``), as in production. The password goes to every node the map names."""
    tls_cluster = RedisCluster(primaries=3, replicas=0, node_timeout_ms=3000, tls=True, password="s3cr/t pw").start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_cluster.tls.ca))
        url = tls_cluster.url
        assert url.startswith("rediss+cluster://:s3cr%2Ft%20pw@")
        s = store_from_url(url, StoreOptions(key_prefix="tls:", timeout=2.0))
        plain = store_from_url(url.replace("rediss+", "redis+"), StoreOptions(timeout=0.5))
        wrong = store_from_url(url.replace("s3cr%2Ft%20pw", "wrong"), StoreOptions(timeout=0.5))
        try:
            async with asyncio.timeout(30):
                tags = tags_on_every_primary(tls_cluster)
                for tag in tags.values():
                    admitted = await s.admit(f"rl:prov:{{{tag}}}", 10, 5, f"dd:{{{tag}}}:1", "t", 30)
                    assert admitted == (0.0, Claim.CLAIMED)
                assert len(set(s._pool.owners)) == 3
                assert await s.ping() is True
                assert await plain.ping() is False  # no plaintext port to talk to
                assert await wrong.ping() is False
                with pytest.raises(StoreError):
                    await wrong.claim("dd:{x}:1", "t", 30)
        finally:
            for store_ in (s, plain, wrong):
                await store_.close()
    finally:
        tls_cluster.stop()
