"""Regressions found in review: shadow mode and event ids, management input bounds, masked URLs."""

from __future__ import annotations

import json

from gateway.secrets import mask_url


async def test_a_forgery_in_shadow_mode_cannot_burn_the_genuine_event_id(make_gateway, kit):
    gw = await make_gateway(providers={"stripe": {"shadow": True}})
    body = kit.stripe_body("evt_shadow_real")
    forged = await gw.post("stripe", body, {"Stripe-Signature": "t=1,v1=" + "0" * 64}, signed=False)
    assert forged.status == 200  # shadow mode forwards it, marked unverified
    assert gw.upstream.events[-1].event["data"]["verified"] is False
    data = await gw.expect(200, "stripe", body)  # the genuine, signed copy still goes through
    assert data["status"] == "forwarded"
    assert gw.upstream.events[-1].event["data"]["verified"] is True


async def test_shadow_mode_with_a_non_object_body_is_not_a_500(make_gateway):
    gw = await make_gateway(providers={"nowpayments": {"shadow": True}})
    for body in (b"[]", b"[1,2]", b'"x"'):
        resp = await gw.post("nowpayments", body, {"x-nowpayments-sig": "00" * 64}, signed=False)
        assert resp.status < 500, await resp.text()


async def test_a_header_event_type_with_undecodable_bytes_is_a_400(gateway, kit):
    body = b'{"ref":"refs/heads/main"}'
    headers = gateway.sign("github", body, {"X-GitHub-Delivery": "d-1", "X-GitHub-Event": "push"})
    lines = [f"POST {gateway.url('github')} HTTP/1.1", f"Host: {gateway.host}:{gateway.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k != "X-GitHub-Event"]
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode() + b"\r\nX-GitHub-Event: push\xff\xfe\r\n\r\n"  # not UTF-8
    status, _, answer = await kit.raw_exchange(gateway.host, gateway.port, [head + body])
    assert status == 400, answer
    assert json.loads(answer)["error"]["code"] == "invalid_body"


async def test_huge_numbers_in_management_parameters_are_400s(gateway, kit):
    for path in (f"{kit.API}/stats/?days={'9' * 5000}", f"{kit.API}/events/?limit={'9' * 5000}"):
        resp = await gateway.get(path)
        assert resp.status == 400, path
        assert (await resp.json())["error"]["code"] == "invalid_parameter"


async def test_bulk_replay_needs_a_real_filter(gateway, kit):
    for body in ({"provder": "github"}, {"provider": ""}, {"before_id": 2**62}, {"limit": 5}):
        resp = await gateway.client.post(
            f"{kit.API}/events/replay/", data=json.dumps(body), headers={"X-API-Key": kit.API_KEY}
        )
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "invalid_parameter"


def test_urls_are_shown_without_passwords_in_userinfo_or_query():
    assert mask_url("https://svc:s3cretpw@internal.example/hook?token=abc123") == (
        "https://svc:***@internal.example/hook?token=***"
    )
    assert mask_url("rediss://cache/0?password=hunter2") == "rediss://cache/0?password=***"
    # A userinfo without a password is usually a token (GitHub's https://<token>@host): masked whole.
    assert mask_url("https://ghp_SECRET@api.internal/hook") == "https://***@api.internal/hook"
    assert mask_url("redis://:pw@cache:6379/0") == "redis://***@cache:6379/0"
    # A password or token holding "/" (base64 does): the userinfo ends at the last "@".
    assert mask_url("https://api:tok/SECRET2abc@payments.internal/events") == "https://api:***@payments.internal/events"
    assert mask_url("redis://:Zm9v/YmFy+SECRET@redis:6379/0") == "redis://***@redis:6379/0"
    assert mask_url("http://host/path?next=a@b") == "http://host/path?next=a@b"  # no userinfo
    assert mask_url("https://hooks.example/notify/ops@corp.example") == "https://hooks.example/notify/ops@corp.example"
    assert mask_url("redis://:12/ab+cd@redis:6379/0") == "redis://***@redis:6379/0"  # not a port
    assert mask_url("redis://:pa?ss@host") == "redis://***@host"
