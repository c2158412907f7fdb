"""The dashboard over HTTP (aiohttp test client): staff access, CSRF, headers, bad input.

Every route of the dashboard's sub-app is enumerated from its router, so a new route is covered
by the anonymous and CSRF checks without being listed here.
"""

from __future__ import annotations

import json
import logging
import re

import dashboard_kit as dk
import pytest
from aiohttp import web

from dashboard.auth import COOKIE, Sessions
from gateway.errors import ConfigError
from gateway.secrets import Secret

ADMIN = dk.ADMIN


@pytest.fixture
async def staff(make_gateway):
    """A gateway with the dashboard on, and its client logged in."""
    gw = await make_gateway(**dk.dashboard_overrides())
    resp = await dk.login(gw.client)
    assert resp.status == 303, await resp.text()
    return gw


def admin_routes(gw) -> list[tuple[str, str]]:
    """(method, path) of every dashboard route but login and static files, ids filled in."""
    out = []
    for route in gw.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if not path.startswith(ADMIN) or route.method == "HEAD" or "/static" in path or path.endswith("/login/"):
            continue
        out.append((route.method, path.replace("{id}", "1").replace("{provider}", "stripe")))
    return sorted(set(out))


async def test_off_unless_configured(gateway):
    resp = await gateway.client.get(f"{ADMIN}/")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


def test_enabled_without_any_key_is_refused(kit, upstream):
    data = kit.config_dict(upstream.url, dashboard={"enabled": True})
    data.pop("management")
    with pytest.raises(ConfigError, match=r"dashboard\.enabled: needs dashboard\.keys or management\.api_keys"):
        kit.build(data)


async def test_the_webhook_app_gets_no_middleware(make_gateway):
    gw = await make_gateway(**dk.dashboard_overrides())
    assert tuple(gw.app.middlewares) == ()  # the dashboard's guard lives on its sub-app only


async def test_every_page_and_partial_refuses_anonymous_requests(make_gateway, kit):
    gw = await make_gateway(**dk.dashboard_overrides())
    routes = admin_routes(gw)
    assert len(routes) >= 15
    for method, path in routes:
        resp = await gw.client.request(method, path, allow_redirects=False)
        text = await resp.text()
        pages = method == "GET" and not any(p in path for p in ("/ajax/", "/partials/", "/stream/"))
        if pages:
            assert resp.status == 303, (method, path, resp.status)
            assert resp.headers["Location"].startswith(f"{ADMIN}/login/?next=")
        else:
            assert resp.status == 401, (method, path, resp.status, text[:200])
        assert "stripe" not in text.lower() or "login" in text.lower(), (method, path)
    htmx = await gw.client.get(f"{ADMIN}/webhooks/", headers={"HX-Request": "true"}, allow_redirects=False)
    assert htmx.status == 401  # a partial request gets a status, not a login page to swap in


async def test_every_post_refuses_a_missing_or_foreign_csrf_token(staff, make_gateway):
    posts = [(m, p) for m, p in admin_routes(staff) if m == "POST"]
    assert len(posts) >= 6
    other = Sessions((Secret(dk.DASHBOARD_KEY.encode()),), 60)
    _, session = other.issue("key other")
    foreign = other.csrf_token(session)  # a valid token, of another session
    for _, path in posts:
        for headers, data in (({}, {}), ({"X-CSRF-Token": foreign}, {}), ({}, {"csrf": "x" * 43})):
            resp = await staff.client.post(path, headers=headers, data=data, allow_redirects=False)
            assert resp.status == 403, (path, headers, data, resp.status)
            assert "security token" in await resp.text()


async def test_login_sets_a_strict_session_cookie(make_gateway):
    gw = await make_gateway(**dk.dashboard_overrides())
    resp = await dk.login(gw.client)
    assert resp.status == 303 and resp.headers["Location"] == f"{ADMIN}/"
    cookie = resp.headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert f"Path={ADMIN}/" in cookie and "Secure" not in cookie
    assert dk.DASHBOARD_KEY not in cookie
    behind_tls = await dk.login(gw.client, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_tls.headers["Set-Cookie"]


async def test_login_refuses_wrong_keys_and_forged_forms(make_gateway, kit, caplog):
    gw = await make_gateway(**dk.dashboard_overrides())
    caplog.set_level(logging.INFO, "gateway.audit")
    wrong = await dk.login(gw.client, key="not-the-key")
    assert wrong.status == 401 and "Set-Cookie" not in wrong.headers
    assert "not valid" in await wrong.text()
    # With dashboard.keys set, a management API key is not a staff login.
    assert (await dk.login(gw.client, key=kit.API_KEY)).status == 401
    forged = await gw.client.post(f"{ADMIN}/login/", data={"key": dk.DASHBOARD_KEY, "token": "1.abc"})
    assert forged.status == 403 and "Set-Cookie" not in forged.headers
    assert any(getattr(r, "action", None) == "login_failed" for r in caplog.records)


async def test_failed_logins_are_throttled_per_address(make_gateway):
    gw = await make_gateway(**dk.dashboard_overrides())
    for _ in range(5):
        assert (await dk.login(gw.client, key="guess")).status == 401
    refused = await dk.login(gw.client)  # even the right key, for a while
    assert refused.status == 429 and "Set-Cookie" not in refused.headers
    assert "Too many failed logins" in await refused.text()


async def test_behind_a_trusted_proxy_logins_are_throttled_per_client(make_gateway):
    """Behind an ingress every login comes from its address: throttled by that, five bad guesses
    by one person locked every member of staff out. The client is the forwarded address, as for
    webhooks; an untrusted peer's X-Forwarded-For changes nothing."""
    gw = await make_gateway(trusted_proxies=["127.0.0.0/8"], **dk.dashboard_overrides())
    guesser, colleague = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    for _ in range(5):
        assert (await dk.login(gw.client, key="guess", headers=guesser)).status == 401
    assert (await dk.login(gw.client, headers=guesser)).status == 429
    assert (await dk.login(gw.client, headers=colleague)).status == 303
    plain = await make_gateway(**dk.dashboard_overrides())  # no trusted proxy: the header is ignored
    for _ in range(5):
        assert (await dk.login(plain.client, key="guess", headers=guesser)).status == 401
    assert (await dk.login(plain.client, headers=colleague)).status == 429


async def test_management_keys_log_in_when_no_dashboard_key_is_set(make_gateway, kit):
    gw = await make_gateway(dashboard={"enabled": True})
    resp = await dk.login(gw.client, key=kit.API_KEY)
    assert resp.status == 303
    page = await gw.client.get(f"{ADMIN}/")
    assert page.status == 200
    assert kit.API_KEY not in await page.text()


async def test_logout_ends_the_session(staff):
    token = await dk.csrf(staff.client)
    cookie = staff.client.session.cookie_jar.filter_cookies(staff.client.make_url("/payments/admin/"))[COOKIE].value
    resp = await staff.client.post(f"{ADMIN}/logout/", data={"csrf": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"{ADMIN}/login/"
    # The old cookie, sent again by hand, is refused: the session id was revoked.
    replayed = await staff.client.get(f"{ADMIN}/", cookies={COOKIE: cookie}, allow_redirects=False)
    assert replayed.status == 303


async def test_sessions_expire(make_gateway, kit):
    sessions = Sessions((Secret(b"k"),), ttl=60)
    token, session = sessions.issue("key x", now=1000.0)
    assert sessions.verify(token, now=1059.0) == session
    assert sessions.verify(token, now=1060.0) is None
    assert sessions.verify(token[:-2] + "AA", now=1001.0) is None  # tampered
    assert not sessions.login_token_ok(sessions.login_token(now=1000.0), now=1000.0 + 3601)


async def test_pages_carry_a_strict_csp_and_no_inline_script_or_style(staff):
    for path in ("/", "/webhooks/", "/live/", "/login/"):
        resp = await staff.client.get(ADMIN + path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"
        html = await resp.text()
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html)), path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"<[^>]+\son[a-z]+=", html), path


async def test_no_secret_is_ever_rendered(staff, kit):
    await staff.deliver_ok("stripe", kit.stripe_body("evt_secret_check"))
    seen = []
    for path in ("/", "/partials/overview/", "/ajax/webhooks/status/", "/webhooks/", "/webhooks/1/", "/live/"):
        resp = await staff.client.get(ADMIN + path)
        assert resp.status == 200, path
        seen.append(await resp.text())
    text = "\n".join(seen)
    for secret in (*kit.ALL_SECRETS, dk.DASHBOARD_KEY):
        assert secret not in text
    assert re.search(r"#0 <span class=\"mono\">[0-9a-f]{8}</span>", text), "keys show as fingerprints"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/webhooks/999999/", 404),
        ("/webhooks/abc/", 400),
        ("/webhooks/99999999999999999999999/", 400),
        ("/webhooks/?q=%7Bnot-json", 400),
        ("/webhooks/?q=42", 400),
        ("/webhooks/?code=abc", 400),
        ("/webhooks/?code=999", 400),
        ("/webhooks/?since=yesterday", 400),
        ("/webhooks/?since=2026-01-02T00:00Z&until=2026-01-01T00:00Z", 400),
        ("/webhooks/?range=2y", 400),
        ("/webhooks/?provider=nope", 400),
        ("/webhooks/?before=-1", 400),
        ("/webhooks/?code=%C2%B2%C2%B2%C2%B2", 400),  # superscript digits: isdigit() says yes, int() no
        ("/webhooks/?since=0001-01-01T00:00%2B01:00", 400),  # before year 1 once in UTC
        ("/webhooks/?outcome=exploded", 400),
        ("/webhooks/?event_type=%00", 400),
        ("/webhooks/replay/preview/?q=%5B", 400),
        ("/ajax/webhooks/stats/?days=0", 400),
        ("/ajax/webhooks/series/?window=week", 400),
        ("/live/stream/?last_event_id=x", 400),
        ("/nope/", 404),
    ],
)
async def test_bad_input_gets_a_clear_4xx(staff, path, status):
    resp = await staff.client.get(ADMIN + path)
    assert resp.status == status, (path, resp.status)
    text = await resp.text()
    assert "Traceback" not in text
    if "/ajax/" in path:
        assert (await resp.json())["success"] is False


@pytest.mark.parametrize("depth", [33, 999])
async def test_a_deeply_nested_search_is_a_400(staff, depth):
    """q is parsed and matched recursively: its nesting is bounded (the parser alone fails near 1000)."""
    resp = await staff.client.get(f"{ADMIN}/webhooks/", params={"q": "[" * depth + "]" * depth})
    assert resp.status == 400, (await resp.text())[:300]
    assert "deeper than 32 levels" in await resp.text()
    ok = await staff.client.get(f"{ADMIN}/webhooks/", params={"q": "[" * 32 + "]" * 32})
    assert ok.status == 200


def test_the_store_filter_refuses_a_needle_past_the_bound():
    from gateway.events.base import EventFilter, contains

    deep: list = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper than 32"):
        EventFilter(contains=deep)
    assert contains(deep, deep) and EventFilter(contains=[[[1]]]).contains == [[[1]]]


@pytest.mark.parametrize("cookie", ["é.é", "abc.\u0661\u0662", "x" * 10 + ".\u00ff"])
async def test_a_non_ascii_session_cookie_is_a_login_redirect(make_gateway, cookie):
    gw = await make_gateway(**dk.dashboard_overrides())
    headers = {"Cookie": f"{COOKIE}={cookie}"}
    resp = await gw.client.get(f"{ADMIN}/", headers=headers, allow_redirects=False)
    assert resp.status == 303, (resp.status, (await resp.text())[:300])
    assert resp.headers["Location"].startswith(f"{ADMIN}/login/?next=")


@pytest.mark.parametrize("token", ["1.é", "\u0661\u0662\u0663.é", "\u0661\u0662\u0663.abc"])
async def test_a_non_ascii_login_token_is_a_403(make_gateway, token):
    gw = await make_gateway(**dk.dashboard_overrides())
    data = {"key": dk.DASHBOARD_KEY, "token": token}
    resp = await gw.client.post(f"{ADMIN}/login/", data=data, allow_redirects=False)
    assert resp.status == 403, (resp.status, (await resp.text())[:300])
    assert "Set-Cookie" not in resp.headers


def test_session_checks_take_any_text():
    sessions = Sessions((Secret(dk.DASHBOARD_KEY.encode()),), 60)
    token, session = sessions.issue("key x")
    assert sessions.verify(token) == session
    for bad in ("é.é", "a.\udcff", "\udcff.a", "\u0661.\u0662"):
        assert sessions.verify(bad) is None
        assert not sessions.login_token_ok(bad)
        assert not sessions.csrf_ok(session, bad)
    stamp, mac = sessions.login_token().split(".")
    assert sessions.login_token_ok(f"{stamp}.{mac}")
    arabic = stamp.translate({ord(d): chr(0x0660 + int(d)) for d in "0123456789"})
    assert not sessions.login_token_ok(f"{arabic}.{mac}")


async def test_bad_posts_get_a_clear_4xx(staff):
    token = await dk.csrf(staff.client)
    for path, data, status in (
        ("/providers/nope/test/", {}, 404),
        ("/webhooks/999999/replay/", {}, 404),
        ("/webhooks/replay/", {}, 400),  # no filter: replaying everything is refused
        ("/webhooks/replay/", {"outcome": "rejected"}, 400),
        ("/dead-letters/discard/", {"code": "abc"}, 400),
        ("/dead-letters/requeue/", {"id": "x"}, 400),
        ("/dead-letters/requeue/", {"id": "\u00b2"}, 400),
    ):
        resp = await staff.client.post(ADMIN + path, data={"csrf": token, **data})
        assert resp.status == status, (path, data, resp.status, (await resp.text())[:300])
    bogus = {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"}
    for path in ("/login/", "/webhooks/replay/"):  # with and without a session: a 400, not a 500
        resp = await staff.client.post(ADMIN + path, data=f"csrf={token}".encode(), headers=bogus)
        assert resp.status == 400, (path, resp.status)


async def test_seed_json_endpoints(staff, kit):
    await staff.deliver_ok("stripe", kit.stripe_body("evt_json_1"))
    status = await (await staff.client.get(f"{ADMIN}/ajax/webhooks/status/")).json()
    stripe = next(p for p in status["providers"] if p["name"] == "stripe")
    assert stripe["requests"] == 1 and stripe["success_rate"] == 1.0
    assert status["health"]["status"] == "healthy" and status["health"].get("tunnel") is None
    stats = await (await staff.client.get(f"{ADMIN}/ajax/webhooks/stats/?days=1")).json()
    mgmt = await (await staff.get(f"{kit.API}/stats/?days=1")).json()
    assert stats["totals"] == mgmt["totals"] and stats["totals"]["accepted"] == 1


async def test_staff_actions_are_audit_logged(staff, kit, caplog):
    caplog.set_level(logging.INFO, "gateway.audit")
    await staff.deliver_ok("stripe", kit.stripe_body("evt_audit"))
    token = await dk.csrf(staff.client)
    resp = await staff.client.post(f"{ADMIN}/webhooks/1/replay/", data={"csrf": token})
    assert resp.status == 200 and "forwarded" in await resp.text()
    entry = next(r for r in caplog.records if getattr(r, "action", None) == "replay")
    assert entry.who.startswith("key ") and entry.details == {"id": 1, "result": "forwarded"}
    assert dk.DASHBOARD_KEY not in json.dumps(entry.__dict__, default=str)


async def test_own_listener_keeps_the_admin_ui_off_the_webhook_port(make_settings, kit, aiohttp_client):
    from dashboard import mount
    from gateway.app import build_app, build_services

    settings = make_settings(**dk.dashboard_overrides(listen={"port": kit.free_port()}))
    services = build_services(settings)
    webhook = await aiohttp_client(build_app(settings, services))
    assert (await webhook.get(f"{ADMIN}/")).status == 404
    root = web.Application()
    mount(root, services, webhook_base=str(webhook.make_url("")).rstrip("/"))
    admin = await aiohttp_client(root)
    assert (await dk.login(admin)).status == 303
    token = await dk.csrf(admin)
    sent = await admin.post(f"{ADMIN}/providers/stripe/test/", data={"csrf": token})
    assert "HTTP 200" in await sent.text()  # through the webhook listener's real pipeline


@pytest.mark.parametrize(
    ("host", "base"),
    [("0.0.0.0", "http://127.0.0.1:8080"),  # noqa: S104
     ("::", "http://[::1]:8080"), ("::1", "http://[::1]:8080"),
     ("", "http://127.0.0.1:8080"), ("10.1.2.3", "http://10.1.2.3:8080"), ("fd00::7", "http://[fd00::7]:8080")],
)  # fmt: skip
def test_loopback_base_brackets_ipv6(host, base):
    from gateway.routes import loopback_base

    assert loopback_base(host, 8080) == base


async def test_own_listener_on_ipv6_reaches_the_webhook_listener(make_settings, kit):
    """Both listeners on ::1: the admin UI's "Send test webhook" posts to http://[::1]:port."""
    import aiohttp

    from gateway.app import build_app, build_services
    from gateway.server import _start, _start_dashboard

    port, dport = kit.free_port(), kit.free_port()
    settings = make_settings(listen={"host": "::1", "port": port}, **dk.dashboard_overrides(listen={"port": dport}))
    services = build_services(settings)
    webhook = await _start(build_app(settings, services), "::1", port, 1.0)
    admin = await _start_dashboard(settings, services, False)
    jar = aiohttp.CookieJar(unsafe=True)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{dport}", cookie_jar=jar) as client:
            assert (await dk.login(client)).status == 303
            sent = await client.post(f"{ADMIN}/providers/stripe/test/", data={"csrf": await dk.csrf(client)})
            assert "HTTP 200" in await sent.text(), (await sent.text())[-800:]
    finally:
        await admin.cleanup()
        await webhook.cleanup()


async def test_send_test_shows_the_upstreams_answer_in_place(staff):
    """The result shows the gateway's answer and the upstream's: status, outcome, response snippet."""
    token = await dk.csrf(staff.client)
    sent = await staff.client.post(f"{ADMIN}/providers/stripe/test/", data={"csrf": token})
    text = await sent.text()
    assert "HTTP 200" in text and "Upstream: <strong>HTTP 204</strong> · success" in text, text
    staff.upstream.then(200)  # answers 200 with a JSON body of its own
    text = await (await staff.client.post(f"{ADMIN}/providers/stripe/test/", data={"csrf": token})).text()
    assert "Upstream: <strong>HTTP 200</strong> · success" in text, text
    assert "{&#34;error&#34;: &#34;scripted&#34;}</pre>" in text  # the upstream's own body, HTML-escaped
    staff.upstream.then(503)
    text = await (await staff.client.post(f"{ADMIN}/providers/stripe/test/", data={"csrf": token})).text()
    # Sync mode stores no event for a failed forward: the gateway's answer names the upstream's status.
    assert re.search(r"upstream_unavailable\s*· the upstream is busy \(HTTP 503\)", text), text
    detail = await (await staff.client.get(f"{ADMIN}/webhooks/1/")).text()
    assert "stored as [REDACTED]" in detail and "are not stored" not in detail
