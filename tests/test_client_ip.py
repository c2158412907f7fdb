"""The client address: the peer, or the rightmost untrusted X-Forwarded-For hop behind trusted proxies.

Checked two ways: through a provider IP allowlist (403 or pass) and through the webhook log line.
"""

from __future__ import annotations

import contextlib
import logging

import aiohttp
import pytest

ALLOWED = "203.0.113.0/24"


async def post_from(gw, kit, event_id: str, forwarded_for: str | None):
    body = kit.stripe_body(event_id)
    extra = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else None
    resp = await gw.post("stripe", body, extra)
    return resp, await resp.json()


def logged_client_ip(caplog, event_id: str) -> str:
    """The client_ip of the one webhook line so far (a request refused early has no event id yet)."""
    [record] = [r for r in caplog.records if r.name == "gateway.webhook"]
    assert record.event_id in (event_id, None)
    return record.client_ip


@pytest.fixture(autouse=True)
def _capture_webhook_logs(caplog):
    caplog.set_level(logging.INFO, logger="gateway.webhook")


@contextlib.asynccontextmanager
async def peer(address: str):
    """A client whose connections come from ``address`` (any 127.x.y.z works on loopback)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as session:
        yield session


async def post_via(session, gw, kit, event_id: str, forwarded_for: str):
    body = kit.stripe_body(event_id)
    headers = {**gw.sign("stripe", body), "X-Forwarded-For": forwarded_for}
    async with session.post(f"http://{gw.host}:{gw.port}{gw.url('stripe')}", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_without_trusted_proxies_the_header_is_ignored(make_gateway, kit, caplog):
    gw = await make_gateway(providers={"stripe": {"ip_allowlist": [ALLOWED, "127.0.0.2/32"]}})
    resp, data = await post_from(gw, kit, "evt_ip_1", "203.0.113.7")
    assert resp.status == 403 and data["error"]["code"] == "ip_not_allowed"
    assert logged_client_ip(caplog, "evt_ip_1") == "127.0.0.1"
    assert gw.upstream.attempts == 0
    async with peer("127.0.0.2") as session:  # an allowed address delivers the same event
        assert await post_via(session, gw, kit, "evt_ip_1", "198.51.100.1") == (
            200,
            {"success": True, "status": "forwarded", "event_id": "evt_ip_1"},
        )


async def test_only_a_trusted_peer_may_name_the_client(make_gateway, kit, caplog):
    gw = await make_gateway(trusted_proxies=["127.0.0.2/32"], providers={"stripe": {"ip_allowlist": [ALLOWED]}})
    resp, data = await post_from(gw, kit, "evt_ip_2", "203.0.113.7")  # from 127.0.0.1: not trusted
    assert resp.status == 403 and data["error"]["code"] == "ip_not_allowed"
    assert logged_client_ip(caplog, "evt_ip_2") == "127.0.0.1"
    async with peer("127.0.0.2") as session:  # the trusted proxy says the same: believed
        status, data = await post_via(session, gw, kit, "evt_ip_2", "203.0.113.7")
    assert (status, data["status"]) == (200, "forwarded")
    assert [r.client_ip for r in caplog.records if r.name == "gateway.webhook"] == ["127.0.0.1", "203.0.113.7"]


async def test_the_peer_is_used_when_it_is_allowed(make_gateway, kit, caplog):
    gw = await make_gateway(providers={"stripe": {"ip_allowlist": ["127.0.0.0/8"]}})
    resp, _ = await post_from(gw, kit, "evt_ip_3", "203.0.113.7, 198.51.100.1")
    assert resp.status == 200
    assert logged_client_ip(caplog, "evt_ip_3") == "127.0.0.1"


@pytest.mark.parametrize(
    ("forwarded_for", "client", "status"),
    [
        ("203.0.113.7", "203.0.113.7", 200),
        ("198.51.100.9, 203.0.113.7", "203.0.113.7", 200),  # the left end is whatever the client wrote
        ("203.0.113.7, 198.51.100.9", "198.51.100.9", 403),  # the rightmost untrusted hop decides
        ("203.0.113.7, 127.0.0.2", "203.0.113.7", 200),  # trusted hops on the right are skipped
        ("203.0.113.7,127.0.0.5 , 127.0.0.9", "203.0.113.7", 200),
        ("::ffff:203.0.113.7", "203.0.113.7", 200),  # IPv4-mapped IPv6 folds to IPv4
        (None, "127.0.0.1", 403),  # a trusted proxy with no header is itself the client
    ],
)
async def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(
    make_gateway, kit, caplog, forwarded_for, client, status
):
    gw = await make_gateway(trusted_proxies=["127.0.0.0/8"], providers={"stripe": {"ip_allowlist": [ALLOWED]}})
    resp, data = await post_from(gw, kit, "evt_ip_4", forwarded_for)
    assert resp.status == status, data
    assert logged_client_ip(caplog, "evt_ip_4") == client
    if status != 200:
        await gw.deliver_ok("stripe", kit.stripe_body("evt_ip_4"), {"X-Forwarded-For": "203.0.113.7"})


async def test_several_forwarded_for_headers_are_one_list(make_gateway, kit):
    gw = await make_gateway(trusted_proxies=["127.0.0.0/8"], providers={"stripe": {"ip_allowlist": [ALLOWED]}})
    body = kit.stripe_body("evt_ip_5")
    headers = [
        *gw.sign("stripe", body).items(),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-For", "198.51.100.9"),
    ]
    resp = await gw.client.post(gw.url("stripe"), data=body, headers=headers)
    assert resp.status == 403, await resp.text()


async def test_a_hop_that_is_not_an_address_is_400(make_gateway, kit):
    gw = await make_gateway(trusted_proxies=["127.0.0.0/8"])
    resp, data = await post_from(gw, kit, "evt_ip_6", "203.0.113.7, not-an-ip")
    assert resp.status == 400 and data["error"]["code"] == "invalid_forwarded_for"
    await gw.deliver_ok("stripe", kit.stripe_body("evt_ip_6"))


async def test_the_source_rate_limit_is_per_client_not_per_proxy(make_gateway, kit):
    gw = await make_gateway(trusted_proxies=["127.0.0.0/8"], rate_limits={"per_source": {"rate": 0.1, "burst": 1}})
    first, _ = await post_from(gw, kit, "evt_ip_7", "203.0.113.7")
    other, _ = await post_from(gw, kit, "evt_ip_8", "203.0.113.8")
    again, data = await post_from(gw, kit, "evt_ip_9", "203.0.113.7")
    assert (first.status, other.status, again.status) == (200, 200, 429), data


async def test_ipv6_clients_share_a_source_budget_per_64(make_gateway, kit):
    gw = await make_gateway(trusted_proxies=["127.0.0.0/8"], rate_limits={"per_source": {"rate": 0.1, "burst": 1}})
    first, _ = await post_from(gw, kit, "evt_ip6_1", "2001:db8:1:2::1")
    same_64, _ = await post_from(gw, kit, "evt_ip6_2", "2001:db8:1:2:ffff::9")
    other_64, _ = await post_from(gw, kit, "evt_ip6_3", "2001:db8:1:3::1")
    assert (first.status, same_64.status, other_64.status) == (200, 429, 200)
