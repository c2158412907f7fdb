"""Shared fixtures: a real upstream on loopback, settings built by the real loader, the gateway.

Nothing here is a mock. ``upstream`` is an aiohttp app that records every CloudEvent it accepts
and can be told how to answer the next deliveries (500, 503 + Retry-After, slow, drop the
connection, reset it). ``make_gateway(**overrides)`` serves ``gateway.app.build_app`` on
loopback with settings from ``build_settings`` (overrides are deep-merged into the YAML dict),
and returns a :class:`Gateway` that signs requests as the providers do.

Test modules do not import this file (``import conftest`` is ambiguous once another test
directory has a conftest of its own); they reach the helpers through the ``kit`` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import struct
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import build_app
from gateway.app_state import SERVICES
from gateway.lean.runner import LeanRunner
from gateway.providers.signer import sign
from gateway.server import connection_limits
from gateway.settings.loader import build_settings, deep_merge, load_catalog
from gateway.settings.model import Settings

API = "/payments/api/webhooks"
API_KEY = "test-api-key-9f3c1e"
STANDARD_KEY = b"test-standard-webhooks-signing-key"
#: One secret per preset. Tests grep responses, metrics and logs for these strings.
SECRETS = {
    "stripe": "whsec_test_stripe_secret_71d0",
    "github": "test-github-secret-5b2a",
    "nowpayments": "test-nowpayments-ipn-secret-c4e8",
    "standard-webhooks": "whsec_" + base64.b64encode(STANDARD_KEY).decode(),
    "shopify": "test-shopify-secret-0a9d",
    "slack": "test-slack-signing-secret-77e1",
}
ALL_SECRETS = (*SECRETS.values(), API_KEY, base64.b64encode(STANDARD_KEY).decode())
TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
CATALOG = load_catalog()


def config_dict(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    """The YAML a test gateway runs with, as a dict; ``overrides`` are deep-merged."""
    base: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 8080},
        "public_url": "http://127.0.0.1:8080",
        "upstream": {"url": upstream_url, "timeout": 2.0, "connect_timeout": 1.0},
        "management": {"api_keys": [API_KEY]},
        "providers": {name: {"secrets": [secret]} for name, secret in SECRETS.items()},
        "logging": {"level": "info"},
    }
    return deep_merge(base, overrides)


def build(data: dict[str, Any], env: dict[str, str] | None = None) -> Settings:
    return build_settings("test.yaml", data, CATALOG, env or {})


# --------------------------------------------------------------------------- the upstream


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.raw)
        return result


@dataclass
class Upstream:
    """A real HTTP upstream. ``script`` holds how to answer the next deliveries, in order.

    Actions: ``"ok"``; an int status (e.g. ``500``); ``(status, {"Retry-After": "7"})``;
    ``("slow", seconds)``; ``("slow", seconds, 500)``; ``("gate", asyncio.Event, status)`` (hold the
    request until the test sets the event, then answer ``status``); ``"close"`` (drop the connection without
    answering); ``"reset"`` (TCP RST); ``"short_answer"`` (accept, then cut the 200 answer's body
    short). When the script is empty, ``delay`` seconds pass and then 204 is answered.
    """

    url: str = ""
    events: list[Received] = field(default_factory=list)
    attempts: int = 0
    script: deque[Any] = field(default_factory=deque)
    delay: float = 0.0
    concurrent: int = 0
    max_concurrent: int = 0

    def then(self, *actions: Any) -> Upstream:
        self.script.extend(actions)
        return self

    def ids(self) -> list[str]:
        return [r.event["id"] for r in self.events]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.attempts += 1
        action = self.script.popleft() if self.script else ("slow", self.delay)
        if action == "close":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)  # never written: the connection is gone
        if action == "reset":
            assert request.transport is not None
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.abort()
            return web.Response(status=204)
        if action == "short_answer":  # 200, then the connection drops inside the body
            self.events.append(Received(dict(request.headers), raw))
            resp = web.StreamResponse(status=200, headers={"Content-Length": "100"})
            await resp.prepare(request)
            await resp.write(b'{"ok":')
            assert request.transport is not None
            request.transport.close()
            return resp
        if isinstance(action, tuple) and action[0] == "gate":  # the test decides when it answers
            await action[1].wait()
            return web.json_response({"error": "scripted"}, status=action[2])
        if isinstance(action, int):
            return web.json_response({"error": "scripted"}, status=action)
        if isinstance(action, tuple) and isinstance(action[0], int):
            return web.json_response({"error": "scripted"}, status=action[0], headers=action[1])
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if isinstance(action, tuple) and action[0] == "slow" and action[1]:
                await asyncio.sleep(action[1])
        finally:
            self.concurrent -= 1
        if isinstance(action, tuple) and len(action) > 2:  # ("slow", seconds, status): fail late
            return web.json_response({"error": "scripted"}, status=action[2])
        self.events.append(Received(dict(request.headers), raw))
        return web.Response(status=204)


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> Upstream:
    up = Upstream()
    app = web.Application()
    app.router.add_post("/events", up.handle)
    server = await aiohttp_server(app)
    up.url = str(server.make_url("/events"))
    return up


# --------------------------------------------------------------------------- the gateway


class Gateway:
    """A gateway served on loopback, with helpers that sign like the providers do."""

    def __init__(self, client: TestClient, settings: Settings, upstream: Upstream) -> None:
        self.client = client
        self.settings = settings
        self.upstream = upstream
        self.app = client.app
        self.host = str(client.host)
        self.port = int(client.port)

    def url(self, provider: str) -> str:
        return f"{API}/{provider}/"

    def sign(
        self, provider: str, body: bytes, headers: dict[str, str] | None = None, now: float | None = None
    ) -> dict[str, str]:
        spec = self.settings.providers[provider]
        return sign(spec, body, self.settings.webhook_url(provider), now=now, headers=headers)

    async def post(
        self,
        provider: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        signed: bool = True,
        now: float | None = None,
    ) -> ClientResponse:
        hdrs = self.sign(provider, body, headers, now) if signed else dict(headers or {})
        return await self.client.post(self.url(provider), data=body, headers=hdrs)

    async def expect(
        self, status: int, provider: str, body: bytes, headers: dict[str, str] | None = None, **kw: Any
    ) -> dict[str, Any]:
        resp = await self.post(provider, body, headers, **kw)
        data: dict[str, Any] = await resp.json()
        assert resp.status == status, data
        return data

    async def deliver_ok(self, provider: str, body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Deliver ``body`` correctly signed and check it reached the upstream exactly once more."""
        before = len(self.upstream.events)
        data = await self.expect(200, provider, body, headers)
        assert data["status"] == "forwarded", data
        assert len(self.upstream.events) == before + 1
        assert self.upstream.events[-1].event["id"] == data["event_id"]
        return data

    async def get(self, path: str, key: str | None = API_KEY) -> ClientResponse:
        headers = {"X-API-Key": key} if key else {}
        return await self.client.get(path, headers=headers)

    def metrics_text(self) -> str:
        from gateway.app_state import SERVICES

        return self.app[SERVICES].metrics.render().decode()


class ProductionServer(TestServer):
    """Serves the app as ``gateway.server`` does: webhooks on the lean path (``LeanRunner``), the
    rest through aiohttp's protocol with the connection limits (``GatewayRunner``'s), bodies as
    sent. ``TestServer`` turns on aiohttp's handler cancellation on client disconnect; production
    keeps aiohttp's default (off), and a gateway test must see what production does when a client
    hangs up mid-request."""

    async def _make_runner(self, **kwargs: Any) -> Any:
        kwargs["handler_cancellation"] = False
        return LeanRunner(self.app, connection_limits(self.app[SERVICES]), **kwargs)


MakeGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(aiohttp_client: Callable[..., Awaitable[TestClient]], upstream: Upstream) -> MakeGateway:
    async def make(**overrides: Any) -> Gateway:
        settings = build(config_dict(upstream.url, **overrides))
        client = await aiohttp_client(ProductionServer(build_app(settings)))
        return Gateway(client, settings, upstream)

    return make


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> Gateway:
    return await make_gateway()


@pytest.fixture
def make_settings(upstream: Upstream) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return build(config_dict(upstream.url, **overrides))

    return make


# --------------------------------------------------------------------------- bodies


def stripe_body(
    event_id: str = "evt_test_1",
    *,
    amount: int = 2000,
    status: str = "succeeded",
    etype: str = "payment_intent.succeeded",
) -> bytes:
    doc = {
        "id": event_id,
        "object": "event",
        "created": int(time.time()),
        "type": etype,
        "data": {
            "object": {
                "id": "pi_3Nabc",
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "status": status,
            }
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def raw_exchange(
    host: str, port: int, parts: list[bytes | float], *, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Speak HTTP/1.1 over a plain socket: ``parts`` are bytes to send or seconds to pause.

    Returns the status, headers (lower-cased names) and body of the first response, read with
    ``timeout`` seconds overall. The socket is closed afterwards.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(timeout):
            for part in parts:
                if isinstance(part, float | int):
                    await asyncio.sleep(part)
                else:
                    writer.write(part)
                    await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            return status, headers, body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def write_config(directory: Path, upstream_url: str, name: str = "gateway.yaml", **overrides: Any) -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config_dict(upstream_url, **overrides), allow_unicode=True), "utf-8")
    return path


@pytest.fixture
def kit() -> types.SimpleNamespace:
    """The helpers and constants test modules share (see the module docstring)."""
    return types.SimpleNamespace(
        API=API,
        API_KEY=API_KEY,
        SECRETS=SECRETS,
        ALL_SECRETS=ALL_SECRETS,
        TRACEPARENT=TRACEPARENT,
        config_dict=config_dict,
        build=build,
        stripe_body=stripe_body,
        free_port=free_port,
        raw_exchange=raw_exchange,
        write_config=write_config,
    )
