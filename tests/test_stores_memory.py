"""The store contract: one suite, run against every store URL (as limits runs its storage suite).

The ``Test*Contract`` classes need two fixtures, ``store`` and ``key``. Here ``store`` is
parametrized over ``STORE_URLS`` (``memory://``); ``test_stores_redis.py`` imports the same
classes and runs them again with a ``store`` fixture of its own on real Redis. A new backend is
one more URL here or one more module like that.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.stores import Claim, store_from_url

STORE_URLS = ["memory://"]


@pytest.fixture(params=STORE_URLS, ids=lambda url: url.split("://")[0])
async def store(request):
    s = store_from_url(request.param)
    yield s
    await s.close()


@pytest.fixture
def key() -> str:
    """A fresh key per test, so a shared backend needs no flushing between tests."""
    return f"dd:{{test}}:{uuid.uuid4().hex}"


class TestDedupContract:
    async def test_a_new_id_is_claimed(self, store, key):
        assert await store.claim(key, "a", 5) is Claim.CLAIMED

    async def test_a_held_id_is_in_flight_for_everyone(self, store, key):
        await store.claim(key, "a", 5)
        assert await store.claim(key, "b", 5) is Claim.IN_FLIGHT
        assert await store.claim(key, "c", 5) is Claim.IN_FLIGHT  # the same token is re-entrant: see
        # test_a_retried_claim_with_the_same_token_is_still_ours (a call that timed out but ran)

    async def test_a_committed_id_is_done(self, store, key):
        await store.claim(key, "a", 5)
        await store.commit(key, "a", 60)
        assert await store.claim(key, "b", 5) is Claim.DONE

    async def test_release_frees_the_id(self, store, key):
        await store.claim(key, "a", 5)
        await store.release(key, "a")
        assert await store.claim(key, "b", 5) is Claim.CLAIMED

    async def test_release_by_another_token_is_a_no_op(self, store, key):
        await store.claim(key, "a", 5)
        await store.release(key, "b")
        assert await store.claim(key, "c", 5) is Claim.IN_FLIGHT

    async def test_release_after_commit_is_a_no_op(self, store, key):
        await store.claim(key, "a", 5)
        await store.commit(key, "a", 60)
        await store.release(key, "a")
        assert await store.claim(key, "b", 5) is Claim.DONE

    async def test_release_of_an_unknown_id_is_a_no_op(self, store, key):
        await store.release(key, "a")
        assert await store.claim(key, "a", 5) is Claim.CLAIMED

    async def test_an_expired_lease_can_be_claimed_again(self, store, key):
        await store.claim(key, "a", 0.1)
        await asyncio.sleep(0.2)
        assert await store.claim(key, "b", 5) is Claim.CLAIMED
        await store.release(key, "a")  # the first holder's late release must not free b's claim
        assert await store.claim(key, "c", 5) is Claim.IN_FLIGHT

    async def test_a_late_commit_does_not_override_a_live_claim(self, store, key):
        await store.claim(key, "a", 0.1)
        await asyncio.sleep(0.2)
        await store.claim(key, "b", 5)
        await store.commit(key, "a", 60)
        await store.release(key, "b")
        assert await store.claim(key, "c", 5) is Claim.CLAIMED

    async def test_a_commit_after_the_lease_expired_still_counts(self, store, key):
        await store.claim(key, "a", 0.1)
        await asyncio.sleep(0.2)
        await store.commit(key, "a", 60)  # the event was delivered: nobody else holds it
        assert await store.claim(key, "b", 5) is Claim.DONE

    async def test_a_commit_expires_after_its_ttl(self, store, key):
        await store.claim(key, "a", 5)
        await store.commit(key, "a", 0.1)
        assert await store.claim(key, "b", 5) is Claim.DONE
        await asyncio.sleep(0.2)
        assert await store.claim(key, "b", 5) is Claim.CLAIMED

    async def test_concurrent_claims_have_one_winner(self, store, key):
        results = await asyncio.gather(*(store.claim(key, f"t{i}", 5) for i in range(50)))
        assert results.count(Claim.CLAIMED) == 1
        assert results.count(Claim.IN_FLIGHT) == 49


class TestRateLimitContract:
    async def test_a_burst_is_allowed_then_refused(self, store, key):
        results = [await store.take(key, 10, 5) for _ in range(5)]
        assert results == [0.0] * 5
        retry_after = await store.take(key, 10, 5)
        assert 0.0 < retry_after <= 0.1 + 1e-6

    async def test_retry_after_is_honest(self, store, key):
        for _ in range(2):
            assert await store.take(key, 20, 2) == 0.0
        retry_after = await store.take(key, 20, 2)
        assert retry_after > 0
        await asyncio.sleep(retry_after + 0.01)
        assert await store.take(key, 20, 2) == 0.0

    async def test_a_refused_take_costs_nothing(self, store, key):
        assert await store.take(key, 10, 1) == 0.0
        first = await store.take(key, 10, 1)
        second = await store.take(key, 10, 1)
        assert first > 0 and second > 0
        assert second <= first  # refusals did not push the allowance further out

    async def test_the_rate_refills_over_time(self, store, key):
        for _ in range(3):
            assert await store.take(key, 50, 3) == 0.0
        assert await store.take(key, 50, 3) > 0
        await asyncio.sleep(0.07)  # ~3 intervals of 20 ms
        assert await store.take(key, 50, 3) == 0.0

    async def test_buckets_are_independent(self, store, key):
        assert await store.take(key, 1, 1) == 0.0
        assert await store.take(key, 1, 1) > 0
        assert await store.take(key + ":other", 1, 1) == 0.0

    async def test_retry_after_grows_with_a_slow_rate(self, store, key):
        assert await store.take(key, 0.5, 1) == 0.0
        assert 1.9 < await store.take(key, 0.5, 1) <= 2.0


class TestAdmitContract:
    """``admit``: the rate limit, then (only if allowed) the claim, in one atomic call."""

    async def test_allowed_then_claimed(self, store, key):
        assert await store.admit(f"{key}:rl", 10, 1, f"{key}:id", "t1", 5) == (0.0, Claim.CLAIMED)
        assert await store.claim(f"{key}:id", "t2", 5) is Claim.IN_FLIGHT

    async def test_a_limited_request_claims_nothing(self, store, key):
        assert (await store.admit(f"{key}:rl", 10, 1, f"{key}:a", "t1", 5))[1] is Claim.CLAIMED
        retry_after, state = await store.admit(f"{key}:rl", 10, 1, f"{key}:b", "t2", 5)
        assert state is None and 0.0 < retry_after <= 0.1 + 1e-6
        assert await store.claim(f"{key}:b", "t3", 5) is Claim.CLAIMED  # the id stayed free

    async def test_it_reports_what_claim_would(self, store, key):
        assert await store.claim(f"{key}:id", "t1", 5) is Claim.CLAIMED
        assert await store.admit(f"{key}:rl", 10, 5, f"{key}:id", "t2", 5) == (0.0, Claim.IN_FLIGHT)
        await store.commit(f"{key}:id", "t1", 60)
        assert await store.admit(f"{key}:rl", 10, 5, f"{key}:id", "t3", 5) == (0.0, Claim.DONE)


class TestHealthContract:
    async def test_ping(self, store):
        assert await store.ping() is True

    async def test_the_url_is_kept(self, store):
        assert store.url.split("://")[0] in ("memory", "redis", "rediss", "redis+cluster", "rediss+cluster")


async def test_memory_store_is_bounded():
    from gateway.stores.memory import MemoryStore

    s = MemoryStore("memory://", max_entries=3)
    for i in range(5):
        assert await s.claim(f"k{i}", "t", 60) is Claim.CLAIMED
    assert s.evictions == 2
    assert await s.claim("k4", "u", 60) is Claim.IN_FLIGHT  # the newest are kept


def test_an_unknown_scheme_names_the_supported_ones():
    with pytest.raises(ValueError, match="memory://"):
        store_from_url("mongodb://localhost")


def test_each_scheme_is_registered_once_and_listed_in_registration_order():
    from gateway.events import EVENT_STORES
    from gateway.stores import STORES
    from gateway.stores.memory import MemoryStore

    assert STORES.schemes == ("memory://", "redis://", "rediss://", "redis+cluster://", "rediss+cluster://")
    assert EVENT_STORES.schemes == ("memory://", "postgresql://", "postgres://")
    assert STORES.supports("rediss://h:6380/0") and not STORES.supports("memory:/x")
    with pytest.raises(RuntimeError, match="registered twice"):
        STORES.register("memory")(MemoryStore)
    assert STORES.backend("memory://") is MemoryStore


def test_durability_is_a_trait_of_the_event_store_class():
    """What the loader's queue-mode check reads, instead of a list of URL prefixes."""
    from gateway.events import EVENT_STORES

    assert EVENT_STORES.backend("postgres://u@h/db").durable
    assert not EVENT_STORES.backend("memory://").durable
