"""The dashboard in a real browser: Playwright driving Debian's Chromium against a gateway on
loopback with a real upstream. Known traffic goes in; what the pages show is compared with
``/metrics`` and the event store. Screenshots are taken on every run into a temporary folder; with
``UPDATE_SCREENSHOTS=1`` (``make screenshots``) they replace the tracked ones in docs/dashboard/.

Chromium comes from apt (``make test`` installs it); Playwright's own download is not used.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dashboard_kit as dk
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from dashboard.sampler import quantile
from gateway.metrics import LATENCY_BUCKETS

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "dashboard"
ADMIN = dk.ADMIN


@pytest.fixture
async def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs it (apt-get install chromium)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        await b.close()


@pytest.fixture
async def site(make_gateway):
    return await make_gateway(**dk.dashboard_overrides(refresh=30))


async def open_page(browser: Browser, site, *, width: int = 1280, scheme: str = "light") -> Page:
    """A logged-in page; console errors (CSP violations included) fail the test at the end."""
    context = await browser.new_context(
        base_url=str(site.client.make_url("")).rstrip("/"), viewport={"width": width, "height": 900},
        color_scheme=scheme, device_scale_factor=1,
    )  # fmt: skip
    page = watch(await context.new_page())
    await page.goto(f"{ADMIN}/webhooks/")
    await expect(page).to_have_url(re.compile(r"/login/\?next="))
    await page.get_by_label("Staff key").fill(dk.DASHBOARD_KEY)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(re.compile(r"/payments/admin/webhooks/$"))
    return page


def watch(page: Page) -> Page:
    page.errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
    return page


def no_errors(page: Page) -> None:
    assert page.errors == [], page.errors  # type: ignore[attr-defined]


async def known_traffic(site, kit) -> None:
    for i in range(3):
        await site.deliver_ok("stripe", kit.stripe_body(f"evt_b{i}"))
    for _ in range(2):
        await site.expect(401, "stripe", kit.stripe_body("evt_forged"), {"Stripe-Signature": "t=1,v1=00"}, signed=False)
    await site.expect(200, "stripe", kit.stripe_body("evt_b0"))  # a duplicate
    ping = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1"}
    await site.deliver_ok("github", b'{"zen": "hi", "hook_id": 1}', ping)


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    assert want, name
    return total


async def test_overview_numbers_match_metrics_and_the_event_store(browser, site, kit):
    await known_traffic(site, kit)
    page = await open_page(browser, site)
    await page.goto(f"{ADMIN}/")
    text = site.metrics_text()
    card = page.locator('[data-provider="stripe"]')
    requests = metric(text, "webhook_gateway_requests_total", provider="stripe")
    ok = sum(metric(text, "webhook_gateway_requests_total", provider="stripe", outcome=o) for o in ("forwarded", "duplicate"))  # noqa: E501
    assert requests == 6 and ok == 4
    await expect(card.locator('[data-stat="requests"]')).to_have_text("6")
    await expect(card.locator('[data-stat="success"]')).to_have_text(f"{ok / requests * 100:.1f}%")
    await expect(card.locator('[data-stat="per-minute"]')).to_have_text("6/min")
    buckets = [
        metric(text, "webhook_gateway_request_duration_seconds_bucket", provider="stripe", le=le)
        for le in [*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"]
    ]
    p95 = quantile(0.95, buckets)
    assert p95 is not None
    await expect(card.locator('[data-stat="p95"]')).to_have_text(f"{p95 * 1000:.1f} ms")
    rejected = re.findall(r'webhook_gateway_requests_total\{outcome="(\w+)",provider="stripe"\} (\S+)', text)
    # series of codes that never happened exist at 0 (for alerts); the page lists what happened
    codes = {code: int(float(n)) for code, n in rejected if code not in ("forwarded", "duplicate") and float(n)}
    assert sum(codes.values()) == 2, codes
    for code, n in codes.items():
        await expect(page.locator(f'[data-rejection="{code}"]')).to_have_text(str(n))
        await expect(card.locator(".badge", has_text=code)).to_be_visible()  # the last error
    await expect(page.locator('[data-provider="github"] [data-stat="requests"]')).to_have_text("1")
    # Queue depth and oldest pending, against a real scrape (which reads the outbox from the store).
    scraped = await (await site.client.get("/metrics")).text()
    depth = sum(metric(scraped, "webhook_gateway_queue_events", status=s) for s in ("queued", "delivering"))
    oldest = float(re.search(r"^webhook_gateway_queue_oldest_pending_age_seconds (\S+)$", scraped, re.M).group(1))
    tile = page.locator(".tile", has=page.locator('[data-stat="queue-depth"]'))
    await expect(tile.locator('[data-stat="queue-depth"]')).to_have_text(str(int(depth)))
    await expect(tile).to_contain_text(f"oldest pending {int(oldest)} s" if oldest else "oldest pending —")
    # The events page lists what the store holds: 3 stripe events and 1 github event.
    stored = (await (await site.get(f"{kit.API}/events/")).json())["events"]
    await page.goto(f"{ADMIN}/webhooks/")
    assert await page.locator("table.events tbody tr").count() == len(stored) == 4
    no_errors(page)


async def stripe_events_page(browser: Browser, site, kit) -> Page:
    """The known traffic served, then the events page filtered to provider stripe."""
    await known_traffic(site, kit)
    page = await open_page(browser, site)
    await page.get_by_label("Provider").select_option("stripe")
    await page.get_by_role("button", name="Apply").click()
    return page


async def test_filter_open_a_detail_and_replay_it(browser, site, kit):
    page = await stripe_events_page(browser, site, kit)
    await expect(page).to_have_url(re.compile(r"provider=stripe"))
    rows = page.locator("table.events tbody tr")
    await expect(rows).to_have_count(3)
    await page.get_by_role("link", name="Event 1 details").click()
    await expect(page.get_by_role("heading", name=re.compile(r"Event #1"))).to_be_visible()
    await expect(page.get_by_text(re.compile(r"^verified with key #0 \(fingerprint [0-9a-f]{8}\)$"))).to_be_visible()
    await expect(page.locator("#curl")).to_contain_text("curl -sS -X POST")
    attempts = page.get_by_role("list", name="Delivery timeline").locator("li[data-attempt]")
    await expect(attempts).to_have_count(1)  # sync mode: one POST, answered 204
    await expect(attempts.first).to_contain_text(re.compile(r"attempt 1: HTTP 204 · \d+\.\d ms"))
    await page.get_by_role("button", name="Raw").click()
    await expect(page.locator("#body-raw")).to_be_visible()
    before = len(site.upstream.events)
    await page.get_by_role("button", name="Replay").click()
    await expect(page.locator("#action-result")).to_contain_text("Event #1: forwarded.")
    assert len(site.upstream.events) == before + 1 and site.upstream.events[-1].event["id"] == "evt_b0"
    no_errors(page)


async def test_bulk_replay_previews_the_count_then_replays(browser, site, kit):
    page = await stripe_events_page(browser, site, kit)
    await page.get_by_role("button", name="Replay matching…").click()
    await expect(page.locator("#bulk-result")).to_contain_text("3 stored event(s) match")
    before = len(site.upstream.events)
    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="Replay 3 event(s)").click()
    await expect(page.locator("#bulk-result")).to_contain_text("3 event(s) forwarded.")
    assert [e.event["id"] for e in site.upstream.events[before:]] == ["evt_b0", "evt_b1", "evt_b2"]
    no_errors(page)


async def test_auto_refresh_updates_in_place_without_layout_shift(browser, make_gateway, kit):
    site = await make_gateway(**dk.dashboard_overrides(refresh=0.5))
    page = await open_page(browser, site)
    await page.goto(f"{ADMIN}/")
    count = page.locator('[data-provider="stripe"] [data-stat="requests"]')
    await expect(count).to_have_text("0")
    charts = page.locator("#charts")
    top = (await charts.bounding_box())["y"]
    await site.deliver_ok("stripe", kit.stripe_body("evt_auto"))
    await expect(count).to_have_text("1", timeout=3000)  # refreshed by the htmx partial, no reload
    assert (await charts.bounding_box())["y"] == top  # the block kept its height: nothing moved
    await page.get_by_label(re.compile("Auto-refresh")).uncheck()
    await page.reload()
    await expect(page.get_by_label(re.compile("Auto-refresh"))).not_to_be_checked()  # the off switch sticks
    no_errors(page)


async def test_send_a_test_webhook_and_see_it_in_the_live_tail(browser, site):
    live = await open_page(browser, site)
    await live.goto(f"{ADMIN}/live/")
    await expect(live.get_by_role("status")).to_have_text("live")
    page = watch(await live.context.new_page())
    await page.goto(f"{ADMIN}/")
    card = page.locator('[data-provider="github"]')
    await card.get_by_role("button", name="Send test webhook").click()
    result = card.locator(".test-result")
    await expect(result).to_contain_text("HTTP 200")
    await expect(result).to_contain_text("forwarded")
    event_id = site.upstream.events[-1].event["id"]
    await expect(live.locator(f'tr[data-event-id="{event_id}"]')).to_be_visible(timeout=2000)
    # Paused, nothing new shows; resumed, the tail catches up from the last event it showed.
    await live.get_by_role("button", name="Pause").click()
    await expect(live.get_by_role("status")).to_have_text("paused")
    await card.get_by_role("button", name="Send test webhook").click()
    await expect(result.get_by_role("link", name=re.compile(r"event #2"))).to_be_visible()
    second = site.upstream.events[-1].event["id"]
    assert second != event_id
    await expect(live.locator(f'tr[data-event-id="{second}"]')).to_have_count(0)
    await live.get_by_role("button", name="Resume").click()
    await expect(live.locator(f'tr[data-event-id="{second}"]')).to_be_visible(timeout=2000)
    no_errors(live)
    no_errors(page)


async def test_dark_mode_follows_the_system_and_the_toggle_sticks(browser, site):
    page = await open_page(browser, site, scheme="light")
    await page.goto(f"{ADMIN}/")
    background = "getComputedStyle(document.body).backgroundColor"
    light = await page.evaluate(background)
    await page.get_by_role("button", name="Dark mode").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = await page.evaluate(background)
    assert dark != light
    await page.reload()
    assert await page.evaluate(background) == dark  # the choice sticks
    system_dark = await open_page(browser, site, scheme="dark")
    await system_dark.goto(f"{ADMIN}/")
    assert await system_dark.evaluate(background) == dark  # no choice made: the system's scheme
    no_errors(page)


async def test_keyboard_and_labels(browser, site, kit):
    await known_traffic(site, kit)
    page = await open_page(browser, site)
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
          .map(el => el.outerHTML)"""
    )
    assert unlabelled == []
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.get_by_label("Event id").focus()
    await page.keyboard.type("evt_b2")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"event_id=evt_b2"))
    await expect(page.locator("table.events tbody tr")).to_have_count(1)


WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5).map(el => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right))"""
SHOTS = {"overview": "/", "events": "/webhooks/", "detail": "/webhooks/1/", "live": "/live/"}


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: docs/dashboard/ only when asked (``make screenshots``), so a test run
    leaves the tracked images alone."""
    return DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


async def test_screenshots(browser, site, kit, shots):
    """<page>-<desktop|phone>-<light|dark>.png (docs/dashboard/ with UPDATE_SCREENSHOTS=1), and no
    sideways scroll at 375 px."""
    await known_traffic(site, kit)
    for i in range(4):
        await site.deliver_ok("shopify", b'{"id": %d, "total_price": "12.50", "currency": "EUR"}' % (820 + i),
                              {"X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": f"w-{i}"})  # fmt: skip
    await site.expect(401, "github", b"{}", {"X-Hub-Signature-256": "sha256=00"}, signed=False)
    shots.mkdir(parents=True, exist_ok=True)
    for device, width in (("desktop", 1280), ("phone", 375)):
        for scheme in ("light", "dark"):
            page = await open_page(browser, site, width=width, scheme=scheme)
            for name, path in SHOTS.items():
                await page.goto(ADMIN + path)
                if name == "overview":
                    await expect(page.locator(".chart .uplot").first).to_be_visible()
                if name == "live":
                    # 8 events and the rejections of the last two minutes (3 rows), as backlog
                    await expect(page.locator("#live-rows tr")).to_have_count(11)
                overflow = await page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
                wide = await page.evaluate(WIDEST)
                assert overflow <= 0, (name, device, overflow, wide)
                await page.screenshot(path=str(shots / f"{name}-{device}-{scheme}.png"), full_page=True)
            no_errors(page)
            await page.context.close()
    assert len(list(shots.glob("*.png"))) >= len(SHOTS) * 4
