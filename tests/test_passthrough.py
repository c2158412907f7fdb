"""passthrough: requests outside the gateway's paths reach the app unchanged, through a real app.

The app is an aiohttp server on loopback with the seed's routes (``/payments/api/payments/``,
``/payments/api/currencies/``) that echoes what it received and can stream its answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientPayloadError, web
from aiohttp.test_utils import TestServer

App = types.SimpleNamespace


@pytest.fixture
async def app(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> App:
    state = App(seen=[], release=asyncio.Event())

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        state.seen.append(request)
        doc = {
            "method": request.method,
            "path_qs": request.rel_url.raw_path_qs,
            "headers": {k: v for k, v in request.headers.items()},
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        resp = web.json_response(doc, status=201 if request.method == "POST" else 200)
        resp.headers["X-App"] = "payments"
        resp.set_cookie("session", "abc")
        return resp

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"first\n")
        await state.release.wait()  # the client has the first chunk before the rest exists
        await resp.write(b"second\n")
        await resp.write_eof()
        return resp

    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        assert request.transport is not None
        request.transport.close()
        return resp

    server_app = web.Application(client_max_size=64 * 1024 * 1024)
    server_app.router.add_route("*", "/payments/api/payments/", echo)
    server_app.router.add_route("*", "/payments/api/currencies/", echo)
    server_app.router.add_get("/stream", stream)
    server_app.router.add_get("/cut", cut)
    server = await aiohttp_server(server_app)
    state.origin = f"http://127.0.0.1:{server.port}"
    return state


async def test_off_by_default(make_gateway: Any, app: App) -> None:
    gw = await make_gateway()
    assert not gw.settings.passthrough.enabled
    resp = await gw.client.get("/payments/api/payments/")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    assert app.seen == []


async def test_the_request_target_is_passed_byte_for_byte(make_gateway: Any, app: App, kit: Any) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin})
    target = b"/payments/api/currencies/?code=usd&x=%2F&y=a+b"
    request = b"GET " + target + b" HTTP/1.1\r\nHost: pay.example\r\nConnection: close\r\n\r\n"
    status, _, body = await kit.raw_exchange(gw.host, gw.port, [request])
    assert status == 200
    assert json.loads(body)["path_qs"] == target.decode()


async def test_other_routes_reach_the_app_unchanged(make_gateway: Any, app: App) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin})
    headers = {"Authorization": "Bearer t", "X-Custom": "1", "X-Forwarded-Proto": "spoofed", "Accept-Encoding": "gzip"}
    resp = await gw.client.get("/payments/api/currencies/?code=usd", headers=headers)
    assert resp.status == 200
    seen = await resp.json()
    assert seen["path_qs"] == "/payments/api/currencies/?code=usd"
    sent = seen["headers"]
    assert (sent["Authorization"], sent["X-Custom"], sent["Accept-Encoding"]) == ("Bearer t", "1", "gzip")
    assert sent["Host"] == f"{gw.host}:{gw.port}", "the Host the client asked for"
    assert sent["X-Forwarded-For"] == "127.0.0.1"
    assert sent["X-Forwarded-Proto"] == "http", "not from a trusted proxy: the client's value is replaced"
    assert sent["X-Forwarded-Host"] == f"{gw.host}:{gw.port}"
    assert resp.headers["X-App"] == "payments" and "session=abc" in resp.headers["Set-Cookie"]


async def test_trusted_proxy_headers_are_kept_and_the_chain_grows(make_gateway: Any, app: App) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin}, trusted_proxies=["127.0.0.0/8"])
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pay.example"}
    seen = await (await gw.client.get("/payments/api/payments/", headers=headers)).json()
    assert seen["headers"]["X-Forwarded-For"] == "203.0.113.7, 127.0.0.1"
    assert (seen["headers"]["X-Forwarded-Proto"], seen["headers"]["X-Forwarded-Host"]) == ("https", "pay.example")
    # A forged line from the client, then the line its proxy added: both kept, in order, so the
    # app (trusting hops from the right) still finds the proxy's, not the forged one.
    from multidict import CIMultiDict

    two = CIMultiDict([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.9")])
    seen = await (await gw.client.get("/payments/api/payments/", headers=two)).json()
    assert seen["headers"]["X-Forwarded-For"] == "6.6.6.6, 198.51.100.9, 127.0.0.1"


async def test_a_large_body_is_streamed_past_the_webhook_size_limit(make_gateway: Any, app: App) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin})
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB, five times the gateway's webhook limit

    async def chunks() -> Any:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    resp = await gw.client.post("/payments/api/payments/", data=chunks())
    assert resp.status == 201
    seen = await resp.json()
    assert (seen["size"], seen["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


async def test_the_answer_is_streamed(make_gateway: Any, app: App) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin})
    resp = await gw.client.get("/stream")
    assert await asyncio.wait_for(resp.content.readline(), 5) == b"first\n"
    app.release.set()
    assert await resp.content.read() == b"second\n"


async def test_a_cut_answer_is_not_passed_off_as_complete(make_gateway: Any, app: App) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin})
    resp = await gw.client.get("/cut")
    with pytest.raises(ClientPayloadError):
        await resp.read()


async def test_the_gateways_own_paths_are_never_proxied(make_gateway: Any, app: App, kit: Any) -> None:
    gw = await make_gateway(passthrough={"enabled": True, "url": app.origin})
    await gw.expect(200, "stripe", kit.stripe_body("evt_passthrough"))
    assert len(gw.upstream.events) == 1, "the webhook went through the pipeline to upstream.url"
    assert (await gw.client.get("/healthz")).status == 200
    for method, path, status in (
        ("GET", "/payments/api/webhooks/nope/", 404),
        ("POST", "/metrics", 405),
        ("GET", "/payments/admin/whatever", 404),
        ("GET", "/payments/api/webhooks", 404),
    ):
        resp = await gw.client.request(method, path)
        assert resp.status == status, path
        assert "error" in json.loads(await resp.text()), path
    assert app.seen == []


async def test_app_down_is_a_json_503(make_gateway: Any, kit: Any) -> None:
    port = kit.free_port()
    gw = await make_gateway(passthrough={"enabled": True, "url": f"http://127.0.0.1:{port}"})
    resp = await gw.client.get("/payments/api/payments/")
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "upstream_unavailable"


def test_passthrough_url_defaults_to_the_upstreams_origin(kit: Any) -> None:
    settings = kit.build(kit.config_dict("http://127.0.0.1:8000/internal/events", passthrough={"enabled": True}))
    assert settings.passthrough.origin(settings.upstream.url) == "http://127.0.0.1:8000"
    with pytest.raises(Exception, match="must be an origin"):
        kit.build(kit.config_dict("http://127.0.0.1:8000/e", passthrough={"url": "http://127.0.0.1:8000/app"}))
