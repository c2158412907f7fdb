"""The live tail on the feed (dashboard/live.py, dashboard/tailhub.py, gateway/observe.Ring).

Through a real gateway and upstream with the memory store: rejections and duplicates arrive one
by one as they are answered; a reconnect gets what it missed from the ring, or a ``missed`` frame
when the ring cannot know (it stopped watching, or the id is another process's); a tail that
falls behind says how many it lost; once the last tail is gone the feed costs nothing again;
with ``--workers N`` (a partial feed) the tail reads the store instead. The ring's bookkeeping
is tested on its own first.
"""

from __future__ import annotations

import asyncio
import json
import time

import dashboard_kit as dk
import helpers_services as hs
import pytest

from dashboard.live import _follow
from dashboard.state import DASHBOARD
from dashboard.tailhub import TailHub
from gateway.app_state import SERVICES
from gateway.observe import EventFeed, Observed, Ring

ADMIN = dk.ADMIN


def seen(event_id: str, outcome: str = "forwarded") -> Observed:
    return Observed(time.time(), "stripe", "t", event_id, outcome, 200, 1.0, True, event=b"{}")


# --------------------------------------------------------------------------- the ring


def test_the_ring_replays_what_came_after_an_id_and_counts_what_it_lost():
    feed = EventFeed()
    ring = Ring(feed, size=3)
    feed.attach(ring)
    for i in range(5):
        feed.publish(seen(f"e{i}"))
    ids = [r.seq for r in ring.records]
    assert ids == [feed.base + 3, feed.base + 4, feed.base + 5] and ring.records[0].event == b""
    after, missed = ring.since(feed.base + 4)
    assert ([r.event_id for r in after], missed) == (["e4"], 0)
    after, missed = ring.since(feed.base + 1)  # e1 is gone from the ring: one record lost
    assert ([r.event_id for r in after], missed) == (["e2", "e3", "e4"], 1)
    assert ring.since(feed.base + 5) == ([], 0)  # up to date


def test_the_ring_cannot_vouch_for_a_time_it_did_not_watch_or_for_another_process():
    feed = EventFeed()
    ring = Ring(feed)
    feed.attach(ring)
    feed.publish(seen("e0"))
    last = feed.seq
    ring.close()  # from here on nothing is built: requests go unnumbered
    assert feed.subscribers == []
    feed.attach(ring)
    feed.publish(seen("e1"))
    after, missed = ring.since(last)
    assert [r.event_id for r in after] == ["e1"] and missed is None
    assert ring.since(feed.seq)[1] == 0  # a reader that came after the gap misses nothing
    assert ring.since(5)[1] is None and ring.since(feed.seq + 10)[1] is None  # another process's numbers


async def test_a_reader_that_falls_behind_is_told_how_many_it_lost():
    feed = EventFeed()
    sub = feed.subscribe(maxsize=2)
    for i in range(5):
        feed.publish(seen(f"e{i}"))
    written: list[bytes] = []

    class Sink:
        async def write(self, data: bytes) -> None:
            written.append(data)

    looks = iter([True, False])
    await _follow(sub, Sink(), lambda: next(looks))  # type: ignore[arg-type]
    text = b"".join(written).decode()
    assert text.count("event: webhook") == 2 and '"count": 3' in text and "the tail fell behind" in text


# --------------------------------------------------------------------------- through the app


@pytest.fixture
async def staff(make_gateway):
    gw = await make_gateway(**dk.dashboard_overrides())
    assert (await dk.login(gw.client)).status == 303
    return gw


def dashboard_of(gw):
    for resource in gw.app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is not None and DASHBOARD in sub:
            return sub[DASHBOARD]
    raise AssertionError("no dashboard mounted")


async def frames(resp, want: int, kinds: tuple[str, ...] = ("webhook", "rejected", "missed")) -> list[dict]:
    out: list[dict] = []
    buffer = b""
    async with asyncio.timeout(2.0):
        while len(out) < want:
            buffer += await resp.content.readany()
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in raw.decode().splitlines() if ": " in line)
                if fields.get("event") in kinds:
                    out.append({**json.loads(fields["data"]), "kind": fields["event"], "sse_id": fields.get("id")})
    return out


async def test_rejections_and_duplicates_arrive_one_by_one_as_answered(staff, kit):
    gw = staff
    async with gw.client.get(f"{ADMIN}/live/stream/") as resp:
        await resp.content.readuntil(b"event: cursor")  # the backlog is written: what follows is live
        await gw.deliver_ok("stripe", kit.stripe_body("evt_f1"))
        await gw.expect(200, "stripe", kit.stripe_body("evt_f1"))  # a duplicate
        await gw.expect(401, "stripe", kit.stripe_body("evt_f2"), {"Stripe-Signature": "t=1,v1=00"}, signed=False)
        ok, dup, bad = await frames(resp, 3)
    assert (ok["kind"], ok["event_id"], ok["outcome"], ok["http_status"], ok["upstream_status"]) == (
        "webhook", "evt_f1", "forwarded", 200, 204,
    )  # fmt: skip
    assert ok["path"] == "?provider=stripe&event_id=evt_f1"
    assert (dup["kind"], dup["code"], dup["http_status"], dup["count"]) == ("rejected", "duplicate", 200, 1)
    assert (bad["kind"], bad["provider"], bad["http_status"], bad["count"]) == ("rejected", "stripe", 401, 1)
    assert bad["code"] not in ("duplicate", "forwarded") and bad["reason"]
    assert int(ok["sse_id"]) + 1 == int(dup["sse_id"]) and int(dup["sse_id"]) + 1 == int(
        bad["sse_id"]
    )  # numbered in order


async def test_a_reconnect_after_the_ring_stopped_watching_is_told_so(staff, kit):
    gw = staff
    dash = dashboard_of(gw)
    dash.tail = TailHub(gw.app[SERVICES].feed, linger=0.05)
    async with gw.client.get(f"{ADMIN}/live/stream/") as resp:
        await resp.content.readuntil(b"event: cursor")
        await gw.deliver_ok("stripe", kit.stripe_body("evt_g1"))
        [last] = await frames(resp, 1)
    feed = gw.app[SERVICES].feed
    await hs.eventually(lambda: feed.subscribers == [])  # the tail closed and the ring let go
    await gw.deliver_ok("stripe", kit.stripe_body("evt_g2"))  # nobody watches: not even built
    async with gw.client.get(f"{ADMIN}/live/stream/", headers={"Last-Event-ID": last["sse_id"]}) as resp:
        [note] = await frames(resp, 1)
        assert note["kind"] == "missed" and note["count"] is None and "not shown" in note["message"]
        await gw.deliver_ok("stripe", kit.stripe_body("evt_g3"))
        [live] = await frames(resp, 1)
        assert live["event_id"] == "evt_g3"


async def test_an_id_from_another_process_gets_a_missed_frame_then_the_live_feed(staff, kit):
    gw = staff
    async with gw.client.get(f"{ADMIN}/live/stream/", headers={"Last-Event-ID": "42"}) as resp:
        [note] = await frames(resp, 1)
        assert note["kind"] == "missed" and note["count"] is None
        await gw.deliver_ok("stripe", kit.stripe_body("evt_h1"))
        assert (await frames(resp, 1))[0]["event_id"] == "evt_h1"


async def test_with_workers_the_tail_reads_the_shared_store(staff, kit):
    gw = staff
    gw.app[SERVICES].feed.partial = True  # as `run --workers N` sets it in each worker
    await gw.deliver_ok("stripe", kit.stripe_body("evt_p0"))
    async with gw.client.get(f"{ADMIN}/live/stream/") as resp:
        [backlog] = await frames(resp, 1)
        assert (backlog["event_id"], backlog["sse_id"], backlog["path"]) == ("evt_p0", "1", "1/")  # the store's numbers
        await gw.deliver_ok("stripe", kit.stripe_body("evt_p1"))
        [polled] = await frames(resp, 1)
    assert (polled["event_id"], polled["sse_id"]) == ("evt_p1", "2")
    assert gw.app[SERVICES].feed.subscribers == []  # the feed was never used
