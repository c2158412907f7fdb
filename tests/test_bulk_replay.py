"""A successful bulk replay (``POST .../events/replay/`` with a filter), in sync and queue mode.

Sync mode delivers the newest `limit` matches now, in the order they arrived, and stops at the
first failure (answered with that failure; what was delivered before it stays delivered). Queue
mode puts every match back in the queue; a failing one is retried like any queued event and does
not stop the others.
The refusals (no filter, unknown filter) are in tests/test_review_fixes.py.
"""

from __future__ import annotations

import json

import helpers_services as hs
import pytest

pg_database, pg_dsn, redis_state = hs.pg_database, hs.pg_dsn, hs.redis_state  # fixtures

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "poll_interval": 0.05, "max_attempts": 3, "lease": 5}
STRIPE_IDS = ["evt_bulk_1", "evt_bulk_2", "evt_bulk_3"]


async def replay(gw, kit, filters):
    resp = await gw.client.post(
        f"{kit.API}/events/replay/", data=json.dumps(filters), headers={"X-API-Key": kit.API_KEY}
    )
    return resp.status, await resp.json()


def github_body(delivery: str) -> tuple[bytes, dict[str, str]]:
    return json.dumps({"zen": delivery}).encode(), {"X-GitHub-Delivery": delivery, "X-GitHub-Event": "ping"}


async def forwarded(gw, kit):
    """Three Stripe events and one GitHub event, each delivered once (sync mode)."""
    for event_id in STRIPE_IDS:
        await gw.deliver_ok("stripe", kit.stripe_body(event_id))
    body, headers = github_body("gh-bulk-1")
    await gw.deliver_ok("github", body, headers)
    assert gw.upstream.ids() == [*STRIPE_IDS, "gh-bulk-1"]


# --------------------------------------------------------------------------- sync mode


async def test_sync_bulk_replay_delivers_the_matches_oldest_first(gateway, kit):
    await forwarded(gateway, kit)
    status, body = await replay(gateway, kit, {"provider": "stripe"})
    assert (status, body) == (200, {"success": True, "status": "forwarded", "count": 3})
    assert gateway.upstream.ids() == [*STRIPE_IDS, "gh-bulk-1", *STRIPE_IDS]  # the same CloudEvent ids again
    first, again = gateway.upstream.events[:3], gateway.upstream.events[-3:]
    assert [r.event for r in again] == [r.event for r in first]  # the stored CloudEvents, unchanged


async def test_sync_bulk_replay_stops_at_the_first_failure(gateway, kit):
    await forwarded(gateway, kit)
    attempts = gateway.upstream.attempts
    gateway.upstream.then("ok", 500)  # the oldest is delivered, the second fails
    status, body = await replay(gateway, kit, {"provider": "stripe"})
    assert status == 502 and body["error"]["code"] == "upstream_error", body
    assert gateway.upstream.attempts == attempts + 2, "the third match must not be tried after a failure"
    assert gateway.upstream.ids()[4:] == ["evt_bulk_1"]  # delivered before the failure: stays delivered

    status, body = await replay(gateway, kit, {"provider": "stripe", "event_id": "evt_bulk_3"})
    assert (status, body["count"]) == (200, 1)
    assert gateway.upstream.ids()[-1] == "evt_bulk_3"


# --------------------------------------------------------------------------- queue mode


@pytest.fixture
async def queue_gateway(make_gateway, pg_dsn, redis_state):
    return await make_gateway(
        upstream={"mode": "queue", "queue": FAST},
        state=redis_state,
        events={"url": pg_dsn, "timeout": 1.0},
    )


async def delivered_twice(gw, ids):
    return all(gw.upstream.ids().count(i) == 2 for i in ids)


async def test_queue_bulk_replay_requeues_every_match(queue_gateway, kit, pg_dsn):
    gw = queue_gateway
    for event_id in STRIPE_IDS:
        await gw.expect(202, "stripe", kit.stripe_body(event_id))
    body, headers = github_body("gh-bulk-q")
    await gw.expect(202, "github", body, headers)
    await hs.eventually(lambda: sorted(gw.upstream.ids()) == sorted([*STRIPE_IDS, "gh-bulk-q"]))
    await hs.eventually(lambda: no_work_left(pg_dsn))

    gw.upstream.then(500)  # one replayed delivery fails: it is retried, the others go on
    status, answer = await replay(gw, kit, {"provider": "stripe", "status": "delivered"})
    assert (status, answer) == (202, {"success": True, "status": "queued", "count": 3})
    await hs.eventually(lambda: delivered_twice(gw, STRIPE_IDS))
    await hs.eventually(lambda: no_work_left(pg_dsn))
    assert gw.upstream.ids().count("gh-bulk-q") == 1, "the filter selects Stripe only"
    rows = await hs.pg_fetch(pg_dsn, "SELECT event_id, status FROM webhook_events WHERE provider = 'stripe'")
    assert {r["event_id"]: r["status"] for r in rows} == dict.fromkeys(STRIPE_IDS, "delivered")


async def no_work_left(dsn: str) -> bool:
    rows = await hs.pg_fetch(dsn, "SELECT count(*) AS n FROM webhook_events WHERE status IN ('queued', 'delivering')")
    return rows[0]["n"] == 0
