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
