"""The events page, actions and live tail against real stores: PostgreSQL (JSON containment,
keyset pages, rejections), queue mode (replay, dead letters), and the memory store."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import quote

import dashboard_kit as dk
import helpers_services as hs
import pytest

pg_database, pg_dsn, redis_state = hs.pg_database, hs.pg_dsn, hs.redis_state  # fixtures
ADMIN = dk.ADMIN
ROW_IDS = re.compile(r'aria-label="Event (\d+) details"')
FAST = {"backoff_base": 0.05, "backoff_max": 0.1, "poll_interval": 0.05, "max_attempts": 2, "lease": 5}


async def page_ids(client, query: str) -> list[int]:
    resp = await client.get(f"{ADMIN}/webhooks/?{query}")
    assert resp.status == 200, await resp.text()
    return [int(i) for i in ROW_IDS.findall(await resp.text())]


@pytest.fixture
async def pg_staff(make_gateway, pg_dsn):
    gw = await make_gateway(events={"url": pg_dsn}, **dk.dashboard_overrides())
    assert (await dk.login(gw.client)).status == 303
    return gw


async def stored(gw, n: int) -> None:
    async def count():
        status = await (await gw.get(f"{dk.ADMIN.replace('admin', 'api/webhooks')}/events/?limit=500")).json()
        return len(status.get("events", [])) >= n

    await hs.eventually(count)


async def test_filters_containment_and_keyset_pages_on_postgresql(pg_staff, kit):
    gw = pg_staff
    for i in range(60):
        currency = "eur" if i % 3 == 0 else "usd"
        etype = "charge.refunded" if i % 2 else "payment_intent.succeeded"
        body = json.loads(kit.stripe_body(f"evt_p{i}", etype=etype))
        body["data"]["object"]["currency"] = currency
        await gw.deliver_ok("stripe", json.dumps(body).encode())
    await stored(gw, 60)
    first = await page_ids(gw.client, "provider=stripe")
    assert len(first) == 50 and first == sorted(first, reverse=True)
    second = await page_ids(gw.client, f"provider=stripe&before={first[-1]}")
    assert len(second) == 10 and max(second) < min(first)  # keyset: no overlap, no gap
    assert sorted(first + second) == list(range(1, 61))
    eur = await page_ids(gw.client, "q=" + quote('{"data": {"object": {"currency": "eur"}}}'))
    assert len(eur) == 20
    eur_q = quote('{"data": {"object": {"currency": "eur"}}}')
    both = await page_ids(gw.client, f"event_type=charge.refunded&q={eur_q}")
    assert len(both) == 10  # odd i divisible by 3: 3, 9, ..., 57
    one = await page_ids(gw.client, "event_id=evt_p7")
    assert len(one) == 1
    page = await (await gw.client.get(f"{ADMIN}/webhooks/?event_id=evt_p7")).text()
    assert "Rejected and duplicate requests" not in page  # an id search is about stored events


async def test_containment_search_survives_a_payload_holding_nul(pg_staff, kit):
    """jsonb refuses \\u0000: one such stored event must not turn every q= search into a 503."""
    gw = pg_staff
    for i, note in enumerate(("plain", "nul \u0000 inside", "also plain", "escaped \\u0000 text")):
        body = json.loads(kit.stripe_body(f"evt_nul{i}"))
        body["data"]["object"]["note"] = note
        body["data"]["object"]["currency"] = "eur" if i != 1 else "usd"
        await gw.deliver_ok("stripe", json.dumps(body).encode())
    await stored(gw, 4)
    eur = await page_ids(gw.client, "q=" + quote('{"data": {"object": {"currency": "eur"}}}'))
    assert sorted(eur) == [1, 3, 4]
    nul = await page_ids(gw.client, "q=" + quote(json.dumps({"data": {"object": {"note": "nul \u0000 inside"}}})))
    assert nul == [2]  # NUL is searched as U+FFFD on both sides
    text = await page_ids(gw.client, "q=" + quote(json.dumps({"data": {"object": {"note": "escaped \\u0000 text"}}})))
    assert text == [4]  # an escaped backslash before u0000 is text, left alone

async def test_rejections_are_listed_and_filtered_by_code(pg_staff, kit):
    gw = pg_staff
    await gw.deliver_ok("stripe", kit.stripe_body("evt_r1"))
    for _ in range(3):
        await gw.expect(401, "stripe", kit.stripe_body("evt_bad"), {"Stripe-Signature": "t=1,v1=00"}, signed=False)
    await gw.expect(200, "stripe", kit.stripe_body("evt_r1"))  # a duplicate

    async def folded():
        text = await (await gw.client.get(f"{ADMIN}/webhooks/?outcome=rejected")).text()
        return "stale_timestamp</span>" in text or "invalid_signature</span>" in text

    await hs.eventually(folded)
    text = await (await gw.client.get(f"{ADMIN}/webhooks/?code=401")).text()
    assert re.search(r"<td class=\"num\">3</td>", text) and "duplicate</span>" not in text
    assert "Stored events" not in text  # a 401 is never a stored event
    dup = await (await gw.client.get(f"{ADMIN}/webhooks/?outcome=duplicate")).text()
    assert "duplicate</span>" in dup and "stale_timestamp</span>" not in dup


async def test_replay_reaches_the_upstream_and_bulk_replay_previews_its_count(pg_staff, kit):
    gw = pg_staff
    for i in range(4):
        await gw.deliver_ok("stripe", kit.stripe_body(f"evt_b{i}", etype="charge.refunded" if i < 3 else "x.y"))
    await stored(gw, 4)
    token = await dk.csrf(gw.client)
    before = len(gw.upstream.events)
    one = await gw.client.post(f"{ADMIN}/webhooks/1/replay/", data={"csrf": token}, headers={"HX-Request": "true"})
    assert "forwarded" in await one.text()
    assert len(gw.upstream.events) == before + 1 and gw.upstream.events[-1].event["id"] == "evt_b0"
    preview = await gw.client.get(f"{ADMIN}/webhooks/replay/preview/?event_type=charge.refunded")
    text = await preview.text()
    assert "<strong>3</strong> stored event(s) match" in text
    assert "Sync mode sends them now, in the order they arrived" in text  # 3 is under the cap
    resp = await gw.client.post(f"{ADMIN}/webhooks/replay/", data={"csrf": token, "event_type": "charge.refunded"})
    assert "3 event(s) forwarded" in await resp.text()
    assert [e.event["id"] for e in gw.upstream.events[-3:]] == ["evt_b0", "evt_b1", "evt_b2"]


async def test_dead_letters_requeue_and_discard(make_gateway, pg_dsn, redis_state, kit):
    gw = await make_gateway(
        upstream={"mode": "queue", "queue": FAST}, state=redis_state, events={"url": pg_dsn, "timeout": 1.0},
        **dk.dashboard_overrides(),
    )  # fmt: skip
    assert (await dk.login(gw.client)).status == 303
    gw.upstream.then(500, 500, 500, 500, 500, 500)
    for i in range(3):
        await gw.expect(202, "stripe", kit.stripe_body(f"evt_d{i}"))

    async def dead_count():
        text = await (await gw.client.get(f"{ADMIN}/webhooks/?outcome=dead")).text()
        return len(ROW_IDS.findall(text)) == 3

    await hs.eventually(dead_count)
    overview = await (await gw.client.get(f"{ADMIN}/partials/overview/")).text()
    assert re.search(r'data-stat="dead">3<', overview)
    token = await dk.csrf(gw.client)
    gw.upstream.script.clear()  # the upstream answers 204 from now on
    resp = await gw.client.post(f"{ADMIN}/dead-letters/requeue/", data={"csrf": token, "id": "1"})
    assert "1 dead letter(s) requeued" in await resp.text()
    await hs.eventually(lambda: "evt_d0" in gw.upstream.ids())
    resp = await gw.client.post(f"{ADMIN}/dead-letters/discard/", data={"csrf": token, "outcome": "dead"})
    assert "2 dead letter(s) discarded" in await resp.text()
    assert await page_ids(gw.client, "outcome=dead") == []


async def test_memory_store_says_what_it_lacks(staff_memory):
    text = await (await staff_memory.client.get(f"{ADMIN}/webhooks/")).text()
    assert "lost on restart" in text and "memory://" in text


@pytest.fixture
async def staff_memory(make_gateway):
    gw = await make_gateway(**dk.dashboard_overrides())
    assert (await dk.login(gw.client)).status == 303
    return gw


async def read_frames(resp, want: int, timeout: float = 2.0, kind: str = "webhook") -> list[dict]:
    frames: list[dict] = []
    buffer = b""
    async with asyncio.timeout(timeout):
        while len(frames) < want:
            buffer += await resp.content.readany()
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                fields = dict(line.split(": ", 1) for line in raw.decode().splitlines() if ": " in line)
                if fields.get("event") == kind:
                    frames.append({"id": int(fields.get("id", 0)), **json.loads(fields["data"])})
    return frames


async def test_live_tail_streams_new_events_and_resumes_from_last_event_id(staff_memory, kit):
    gw = staff_memory
    await gw.deliver_ok("stripe", kit.stripe_body("evt_l0"))
    async with gw.client.get(f"{ADMIN}/live/stream/") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert [f["event_id"] for f in await read_frames(resp, 1)] == ["evt_l0"]  # the backlog
        await gw.deliver_ok("stripe", kit.stripe_body("evt_l1"))
        live = await read_frames(resp, 1)  # within 2 s
        assert live[0]["event_id"] == "evt_l1"
    await gw.deliver_ok("stripe", kit.stripe_body("evt_l2"))
    await gw.deliver_ok("stripe", kit.stripe_body("evt_l3"))
    async with gw.client.get(f"{ADMIN}/live/stream/", headers={"Last-Event-ID": str(live[0]["id"])}) as resp:
        assert [f["event_id"] for f in await read_frames(resp, 2)] == ["evt_l2", "evt_l3"]


async def test_keys_show_fingerprint_and_rotation_age_from_postgresql(make_gateway, pg_dsn, kit):
    gw = await make_gateway(
        events={"url": pg_dsn},
        providers={"stripe": {"secrets": ["whsec_new_key_0001", kit.SECRETS["stripe"]]}},
        **dk.dashboard_overrides(),
    )
    assert (await dk.login(gw.client)).status == 303
    body = kit.stripe_body("evt_rot")
    headers = gw.settings.providers["stripe"]
    from gateway.providers.signer import sign

    signed = sign(headers, body, gw.settings.webhook_url("stripe"), secret_index=1)  # the old key
    resp = await gw.client.post(gw.url("stripe"), data=body, headers=signed)
    assert resp.status == 200
    await stored(gw, 1)
    text = await (await gw.client.get(f"{ADMIN}/partials/overview/")).text()
    card = text.split('data-provider="stripe"', 1)[1].split("</article>", 1)[0]
    assert re.search(r"#0 <span class=\"mono\">[0-9a-f]{8}</span> \(0 verified\)", card)
    assert re.search(r"#1 <span class=\"mono\">[0-9a-f]{8}</span> \(1 verified, last \d+s ago\)", card)
    assert "whsec_new_key_0001" not in text and kit.SECRETS["stripe"] not in text


async def test_live_tail_shows_rejections_as_they_are_counted(staff_memory, kit):
    gw = staff_memory
    async with gw.client.get(f"{ADMIN}/live/stream/") as resp:
        await resp.content.readuntil(b"\n\n")  # the retry line: the stream is up
        # Counted before or after the stream's first look, it arrives: as backlog or as news.
        await gw.expect(401, "stripe", kit.stripe_body("evt_x"), {"Stripe-Signature": "t=1,v1=00"}, signed=False)
        frames = await read_frames(resp, 1, kind="rejected")
        assert frames[0]["provider"] == "stripe" and frames[0]["count"] == 1 and frames[0]["code"] != "duplicate"


async def test_a_poll_that_finds_a_whole_page_new_says_how_many_it_may_have_missed():
    """Several workers: the tail polls the store's newest page. More new events than a page used
    to vanish from the tail without a word; now a `missed` frame says so."""
    from test_events_store import insert_all, rec

    from dashboard.live_poll import PAGE, poll_tail
    from gateway.events.memory import MemoryEventStore

    store = MemoryEventStore("memory://", max_events=10_000)
    [first] = await insert_all(store, [rec("evt_seen")])
    await insert_all(store, [rec(f"evt_burst_{i}") for i in range(PAGE + 30)])
    frames: list[tuple[str, dict]] = []

    class Sink:
        async def write(self, data: bytes) -> None:
            pass

    def frame(kind, data, ident):
        frames.append((kind, data))
        return b""

    polls = iter([True, False])
    await poll_tail(Sink(), store, first, frame, lambda: next(polls), asyncio.Event())
    kinds = [kind for kind, _ in frames]
    assert kinds == ["missed"] + ["webhook"] * PAGE
    assert "up to 30 more" in frames[0][1]["message"]
