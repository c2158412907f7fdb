"""The HTTP surface beside the webhook (management API, /metrics, health probes), and the real
server process: ``python -m gateway run`` drains on SIGTERM and writes one JSON log line per webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time

import aiohttp
import pytest

from gateway.providers.signer import sign

# --------------------------------------------------------------------------- management API


async def ok_json(resp, status: int = 200) -> dict:
    data = await resp.json()
    assert resp.status == status, data
    assert resp.content_type == "application/json"
    return data


async def test_providers_lists_every_configured_provider(gateway, kit):
    data = await ok_json(await gateway.get(f"{kit.API}/providers/"))
    assert data["success"] is True
    rows = {row["name"]: row for row in data["providers"]}
    assert set(rows) == set(kit.SECRETS)
    for name, row in rows.items():
        assert {"name", "display_name", "webhook_url", "signature_header", "signature_algorithm", "icon"} <= set(row)
        assert row["webhook_url"] == f"http://127.0.0.1:8080/payments/api/webhooks/{name}/"
        assert row["display_name"] and row["icon"]
    assert rows["stripe"]["display_name"] == "Stripe"
    assert rows["stripe"]["signature_header"] == "stripe-signature"
    assert rows["stripe"]["signature_algorithm"] == "HMAC-SHA256"
    assert rows["nowpayments"]["signature_header"] == "x-nowpayments-sig"
    assert rows["nowpayments"]["signature_algorithm"] == "HMAC-SHA512"
    assert rows["github"]["signature_header"] == "x-hub-signature-256"


@pytest.mark.parametrize("path", ["providers/", "health/", "stats/", "stats/?days=1"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": ""}, {"Authorization": "Basic eA=="}],
    ids=["none", "wrong", "wrong_bearer", "empty", "basic"],
)
async def test_the_management_api_needs_a_valid_key(gateway, kit, path, headers):
    resp = await gateway.client.get(f"{kit.API}/{path}", headers=headers)
    data = await ok_json(resp, 401)
    assert data["error"]["code"] == "unauthorized"


async def test_a_key_that_is_not_utf8_is_401(gateway, kit):
    head = f"GET {kit.API}/providers/ HTTP/1.1\r\nHost: x\r\nX-API-Key: ".encode() + b"\xff\xfe\r\n\r\n"
    status, _, body = await kit.raw_exchange(gateway.host, gateway.port, [head])
    assert status == 401 and b'"unauthorized"' in body


async def test_a_bearer_token_is_accepted(gateway, kit):
    resp = await gateway.client.get(f"{kit.API}/health/", headers={"Authorization": f"Bearer {kit.API_KEY}"})
    await ok_json(resp)


async def test_without_api_keys_the_management_api_is_closed(make_gateway, kit):
    gw = await make_gateway(management={"api_keys": []})
    data = await ok_json(await gw.get(f"{kit.API}/providers/", key="anything"), 401)
    assert "api_keys" in data["error"]["message"]


async def test_health(gateway, kit):
    data = await ok_json(await gateway.get(f"{kit.API}/health/"))
    assert data["status"] == "healthy"
    assert data["draining"] is False
    assert data["store"]["ok"] is True
    assert {p["name"] for p in data["providers"]} == set(kit.SECRETS)


async def traffic(gw, kit) -> None:
    """2 forwarded + 1 duplicate + 1 forged for stripe, 1 forwarded for github, 1 unknown provider."""
    await gw.deliver_ok("stripe", kit.stripe_body("evt_stats_1"))
    await gw.deliver_ok("stripe", kit.stripe_body("evt_stats_2"))
    assert (await gw.expect(200, "stripe", kit.stripe_body("evt_stats_1")))["status"] == "duplicate"
    await gw.expect(401, "stripe", kit.stripe_body("evt_stats_3"), {"Stripe-Signature": "t=1,v1=00"}, signed=False)
    await gw.deliver_ok("github", b"{}", {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "gh-stats"})
    await gw.expect(404, "no-such-provider", b"{}", signed=False)


async def test_stats_are_real_counts(gateway, kit):
    await traffic(gateway, kit)
    data = await ok_json(await gateway.get(f"{kit.API}/stats/?days=1"))
    assert data["days"] == 1
    stripe = data["providers"]["stripe"]
    assert (stripe["received"], stripe["accepted"], stripe["duplicates"], stripe["rejected"]) == (4, 2, 1, 1)
    assert stripe["outcomes"] == {"forwarded": 2, "duplicate": 1, "invalid_signature": 1}
    github = data["providers"]["github"]
    assert (github["received"], github["accepted"]) == (1, 1)
    assert "no-such-provider" not in data["providers"]
    assert data["totals"]["received"] == 6
    assert data["totals"]["accepted"] == 3
    [today] = data["daily"]
    assert today["received"] == 6
    week = await ok_json(await gateway.get(f"{kit.API}/stats/"))
    assert week["days"] == 7 and len(week["daily"]) == 7
    assert week["totals"]["received"] == 6


@pytest.mark.parametrize("days", ["0", "abc", "1000", "-1", "", "1.5", "७"])
async def test_stats_days_must_be_1_to_366(gateway, kit, days):
    data = await ok_json(await gateway.get(f"{kit.API}/stats/?days={days}"), 400)
    assert data["error"]["code"] == "invalid_parameter"


async def test_stats_for_a_year(gateway, kit):
    data = await ok_json(await gateway.get(f"{kit.API}/stats/?days=366"))
    assert len(data["daily"]) == 366


async def test_secrets_never_appear_in_any_response(gateway, kit):
    await traffic(gateway, kit)
    paths = [
        f"{kit.API}/providers/",
        f"{kit.API}/health/",
        f"{kit.API}/stats/?days=1",
        f"{kit.API}/stats/?days=0",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.yaml",
        "/nope",
    ]
    texts = [await (await gateway.get(path)).text() for path in paths]
    for provider in kit.SECRETS:
        resp = await gateway.post(provider, b"{}", {"X-GitHub-Event": "ping"})
        texts.append(await resp.text())
    everything = "\n".join(texts)
    for secret in kit.ALL_SECRETS:
        assert secret not in everything


# --------------------------------------------------------------------------- operations


async def test_metrics_count_requests_by_provider_and_outcome(gateway, kit):
    await traffic(gateway, kit)
    resp = await gateway.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'webhook_gateway_requests_total{outcome="forwarded",provider="stripe"} 2.0' in text
    assert 'webhook_gateway_requests_total{outcome="duplicate",provider="stripe"} 1.0' in text
    assert 'webhook_gateway_requests_total{outcome="invalid_signature",provider="stripe"} 1.0' in text
    assert 'webhook_gateway_requests_total{outcome="unknown_provider",provider="unknown"} 1.0' in text
    assert "webhook_gateway_request_duration_seconds_bucket" in text
    # A name from the URL never becomes a label: that would let anyone grow the metric set.
    assert "no-such-provider" not in text


async def test_healthz_and_readyz(gateway):
    resp = await gateway.client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "alive"
    resp = await gateway.client.get("/readyz")
    data = await resp.json()
    assert resp.status == 200 and data["ready"] is True


# --------------------------------------------------------------------------- the server process


class GatewayProcess:
    """``python -m gateway run --config FILE`` on a free port, its stdout and stderr collected."""

    def __init__(self, kit, tmp_path, upstream, **overrides) -> None:
        self.port = kit.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        overrides = {"listen": {"port": self.port}, "public_url": self.base, **overrides}
        self.config = kit.write_config(tmp_path, upstream.url, **overrides)
        self.settings = kit.build(kit.config_dict(upstream.url, **overrides))
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.terminated = False
        self._readers: list[asyncio.Task] = []

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "--config", str(self.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._readers = [
            asyncio.create_task(self._collect(self.proc.stdout, self.stdout)),
            asyncio.create_task(self._collect(self.proc.stderr, self.stderr)),
        ]
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.returncode is None, "".join(self.stderr)
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.base}/healthz") as resp:
                    if resp.status == 200:
                        return
            assert time.monotonic() < deadline, "the gateway did not start"
            await asyncio.sleep(0.05)

    @staticmethod
    async def _collect(stream, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode())

    async def post(self, session, provider: str, body: bytes, headers=None, *, signed: bool = True):
        spec = self.settings.providers[provider]
        hdrs = sign(spec, body, self.settings.webhook_url(provider), headers=headers) if signed else headers
        async with session.post(f"{self.base}/payments/api/webhooks/{provider}/", data=body, headers=hdrs) as resp:
            return resp.status, await resp.json()

    def terminate(self) -> None:
        """One SIGTERM, as Kubernetes sends (a second one during teardown may find the default
        handler back in place and kill the process)."""
        assert self.proc is not None
        if not self.terminated and self.proc.returncode is None:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    async def stop(self, timeout: float = 10) -> int:
        assert self.proc is not None
        self.terminate()
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout if line.startswith("{")]


@pytest.fixture
async def run_gateway(kit, tmp_path, upstream):
    procs: list[GatewayProcess] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def start(**overrides) -> GatewayProcess:
        proc = GatewayProcess(kit, tmp_path, upstream, **overrides)
        procs.append(proc)
        await proc.start(session)
        return proc

    start.session = session
    yield start
    for proc in procs:
        await proc.kill()
    await session.close()


@pytest.mark.slow
async def test_sigterm_drains_in_flight_webhooks(run_gateway, upstream, kit):
    gw = await run_gateway(shutdown={"drain_delay": 1.0, "timeout": 10})
    session = run_gateway.session
    upstream.delay = 1.5
    webhook = asyncio.create_task(gw.post(session, "stripe", kit.stripe_body("evt_drain")))
    while upstream.concurrent == 0:  # wait until the event is at the upstream
        assert not webhook.done(), webhook.result()
        await asyncio.sleep(0.01)
    gw.terminate()
    started = time.monotonic()
    ready = []
    while time.monotonic() - started < 0.8:
        async with session.get(f"{gw.base}/readyz") as resp:
            ready.append((resp.status, (await resp.json())["ready"]))
            if resp.status == 503:
                break
        await asyncio.sleep(0.05)
    assert ready[-1] == (503, False), ready
    status, body = await webhook
    assert (status, body["status"]) == (200, "forwarded")
    assert await gw.stop(timeout=10) == 0
    assert upstream.ids() == ["evt_drain"]
    messages = [line.get("msg") for line in gw.json_lines()]
    assert messages.index("draining") < messages.index("stopped")


@pytest.mark.slow
async def test_one_json_log_line_per_webhook_without_secrets_or_bodies(run_gateway, upstream, kit):
    gw = await run_gateway()
    session = run_gateway.session
    marker = "BODY-MARKER-5f1c"
    body = kit.stripe_body("evt_log_1").replace(b'"object":"event"', f'"object":"{marker}"'.encode())
    assert await gw.post(session, "stripe", body) == (
        200,
        {"success": True, "status": "forwarded", "event_id": "evt_log_1"},
    )
    status, _ = await gw.post(
        session, "stripe", body.replace(b"evt_log_1", b"evt_log_2"), {"Stripe-Signature": "x"}, signed=False
    )
    assert status == 401
    status, _ = await gw.post(session, "github", b'{"note":"' + marker.encode() + b'"}', signed=False)
    assert status == 401
    assert await gw.stop() == 0
    lines = gw.json_lines()
    webhooks = [line for line in lines if line.get("logger") == "gateway.webhook"]
    assert len(webhooks) == 3, lines
    first, forged, unsigned = webhooks
    assert first["provider"] == "stripe" and first["outcome"] == "forwarded"
    assert first["event_id"] == "evt_log_1" and first["status"] == 200
    assert isinstance(first["latency_ms"], int | float) and first["latency_ms"] >= 0
    assert len(first["trace_id"]) == 32
    assert (forged["provider"], forged["outcome"], forged["status"]) == ("stripe", "invalid_signature", 401)
    assert forged.keys() >= {"provider", "outcome", "event_id", "latency_ms"}
    assert (unsigned["provider"], unsigned["outcome"]) == ("github", "missing_signature")
    output = "".join(gw.stdout + gw.stderr)
    assert marker not in output
    for secret in kit.ALL_SECRETS:
        assert secret not in output
