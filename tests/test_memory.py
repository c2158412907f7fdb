"""Memory: a rejected request's body is freed when its answer is sent, not at the next collection.

The runner keeps the rejection it caught; a rejection's traceback holds the frames of the stages
it passed through, and those frames hold the request context (body included). The cycle
(exception -> traceback -> frame -> context, and the handler's frame -> exception) left every
rejected body to the cyclic collector. With the collector off, nothing but reference counting
frees memory, so a context still alive after its answer is one such cycle.
"""

from __future__ import annotations

import gc

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
