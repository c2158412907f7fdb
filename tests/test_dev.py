"""``webhook-gateway dev``, run as a developer runs it: a subprocess, its banner and event lines.

The tunnel goes through pyngrok's real start-up path against a fake ``ngrok`` (tests/fake_ngrok.py):
pyngrok starts it, reads its log lines, probes and calls its local API; the "public" URL it hands
out is a loopback proxy to the gateway, so webhooks really travel through the tunnel. Nothing
leaves the machine. Twilio's official SDK signs for the tunnel URL, which proves it became
``public_url``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator
from twilio.request_validator import RequestValidator

from gateway.providers.signer import sample_event, sign
from gateway.tunnel import TOKEN_URL, find_authtoken

sys.path.insert(0, str(Path(__file__).parent))
from fake_ngrok import make_fake, starts

pytestmark = pytest.mark.slow
TWILIO_TOKEN = "dev-twilio-auth-token-5e1f0c2a9b"
NGROK_TOKEN = "test-ngrok-token-2c9e"
OPENAPI = yaml.safe_load((Path(__file__).parent.parent / "api" / "openapi.yaml").read_text("utf-8"))
HEALTH_SCHEMA = OPENAPI["components"]["schemas"]["Health"]
PROVIDER_NET = "203.0.113.0/24"  # the fake agent's X-Forwarded-For is 203.0.113.7, as a provider's address


class Dev:
    """``python -m gateway dev ...``; its stdout and stderr lines as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: dict[str, list[str]] = {"out": [], "err": []}
        self.changed = asyncio.Event()
        assert proc.stdout is not None and proc.stderr is not None
        self.readers = [
            asyncio.create_task(self._read(proc.stdout, "out")),
            asyncio.create_task(self._read(proc.stderr, "err")),
        ]

    @classmethod
    async def start(cls, *args: str, env: dict[str, str]) -> Dev:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "dev", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        return cls(proc)

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        async for raw in stream:
            self.lines[name].append(raw.decode().rstrip("\n"))
            self.changed.set()
        self.changed.set()

    async def wait_line(self, pattern: str, stream: str = "out", start: int = 0, timeout: float = 20) -> re.Match[str]:
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[stream][start:]:
                    if found := regex.search(line):
                        return found
                if self.proc.returncode is not None and all(r.done() for r in self.readers):
                    raise AssertionError(f"exited {self.proc.returncode} before {pattern!r}: {self.lines}")
                self.changed.clear()
                await self.changed.wait()

    async def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        await asyncio.gather(*self.readers)
        return code


async def finished(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "dev", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """pyngrok's home (``$XDG_CONFIG_HOME/ngrok``) in tmp_path; the token in NGROK_AUTHTOKEN."""
    base = {k: v for k, v in os.environ.items() if k not in ("NGROK_AUTHTOKEN", "PYNGROK_NGROK_PATH")}
    return {**base, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "NGROK_AUTHTOKEN": NGROK_TOKEN, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def setup(kit: Any, tmp_path: Path, upstream: Any) -> dict[str, Any]:
    port = kit.free_port()
    overrides = {
        "listen": {"host": "127.0.0.1", "port": port},
        "public_url": f"http://127.0.0.1:{port}",
        "providers": {"twilio": {"secrets": [TWILIO_TOKEN]}, "github": {"ip_allowlist": [PROVIDER_NET]}},
    }
    data = kit.config_dict(upstream.url, **overrides)
    config = kit.write_config(tmp_path, upstream.url, **overrides)
    return {"port": port, "config": config, "settings": kit.build(data), "data": data}


def signed_stripe(kit: Any, settings: Any, event_id: str) -> tuple[bytes, dict[str, str]]:
    body = kit.stripe_body(event_id)
    return body, sign(settings.providers["stripe"], body, settings.webhook_url("stripe"))


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def get(url: str, key: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url, headers={"X-API-Key": key}) as resp:
        assert resp.status == 200
        return await resp.json()


async def webhook_urls(base: str, key: str) -> dict[str, str]:
    """What the management API says to paste into each provider's dashboard."""
    listed = await get(f"{base}/payments/api/webhooks/providers/", key)
    return {p["name"]: p["webhook_url"] for p in listed["providers"]}


def twilio_post(url: str, sid: str) -> tuple[bytes, dict[str, str]]:
    """A Twilio status callback, signed by Twilio's SDK for ``url`` (the URL Twilio calls)."""
    form = {"AccountSid": "AC" + "0" * 32, "MessageSid": sid, "MessageStatus": "delivered", "To": "+15005550001"}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(TWILIO_TOKEN).compute_signature(url, form),
    }
    return urlencode(form).encode(), headers


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_dev_ngrok_banner_urls_event_lines_health_and_reload(kit, setup, env, tmp_path, upstream):
    fake = make_fake(tmp_path)
    dev = await Dev.start(
        "--config", str(setup["config"]), "--ngrok", "--ngrok-path", str(fake), "--region", "eu", env=env
    )
    try:
        tunnel, local = (await dev.wait_line(r"Tunnel:\s+(\S+) -> (\S+)  \(ngrok, region eu\)")).groups()
        assert (
            local == f"http://127.0.0.1:{setup['port']}" and tunnel.startswith("http://127.0.0.1:") and tunnel != local
        )
        urls = {}
        for name in setup["settings"].providers:
            urls[name] = (await dev.wait_line(rf"^\s+{name}\s+(\S+)\s+secret set \(1\)$"))[1]
            assert urls[name] == f"{tunnel}/payments/api/webhooks/{name}/"
        await dev.wait_line(rf"Dashboard: {re.escape(tunnel)}/payments/admin/$")
        ready = len(dev.lines["out"])
        await dev.wait_line("Ready: one line per webhook")

        body, headers = signed_stripe(kit, setup["settings"], "evt_dev_1")
        status, answer = await post(urls["stripe"], body, headers)
        assert (status, answer["status"]) == (200, "forwarded")
        await dev.wait_line(
            r"stripe\s+payment_intent\.succeeded\s+evt_dev_1\s+verified  upstream 204  \d+\.\d ms$", start=ready
        )
        assert (await post(urls["stripe"], body, headers))[0] == 200
        await dev.wait_line(r"stripe\s+payment_intent\.succeeded\s+evt_dev_1\s+duplicate \(200\)", start=ready)
        forged = {**headers, "Stripe-Signature": headers["Stripe-Signature"][:-4] + "0000"}
        assert (await post(urls["stripe"], body, forged))[0] == 401
        await dev.wait_line(r"stripe\s+-\s+-\s+rejected invalid_signature \(401\): ", start=ready)

        # Twilio signs the URL it calls: the SDK signs for the tunnel's URL, and the gateway agrees.
        body, headers = twilio_post(urls["twilio"], "SM" + "1" * 32)
        assert (await post(urls["twilio"], body, headers))[0] == 200
        await dev.wait_line(r"twilio\s+delivered\s+SM1{32}\s+verified  upstream 204", start=ready)

        # The agent is a trusted proxy: the provider's address (its X-Forwarded-For) meets ip_allowlist.
        github = setup["settings"].providers["github"]
        body, extra = sample_event(github)
        headers = sign(github, body, urls["github"], headers=extra)
        assert (await post(urls["github"], body, headers))[0] == 200
        await dev.wait_line(rf"github\s+push\s+{extra['X-GitHub-Delivery']}\s+verified  upstream 204", start=ready)
        status, answer = await post(setup["settings"].webhook_url("github"), body, headers)  # not via the tunnel
        assert (status, answer["error"]["code"]) == (403, "ip_not_allowed")

        health = await get(f"{tunnel}/payments/api/webhooks/health/", kit.API_KEY)
        Draft202012Validator(HEALTH_SCHEMA).validate(health)  # as documented in api/openapi.yaml
        assert health["tunnel"] == {
            "provider": "ngrok",
            "public_url": tunnel,
            "region": "eu",
            "forwards_to": local,
            "up": True,
        }
        assert (await webhook_urls(tunnel, kit.API_KEY))["stripe"] == urls["stripe"]

        # A reload (here: github removed) keeps the tunnel as public_url.
        data = {**setup["data"], "providers": {k: v for k, v in setup["data"]["providers"].items() if k != "github"}}
        setup["config"].write_text(yaml.safe_dump(data), "utf-8")
        dev.proc.send_signal(signal.SIGHUP)
        async with asyncio.timeout(10):
            while "github" in [
                p["name"] for p in (await get(f"{local}/payments/api/webhooks/providers/", kit.API_KEY))["providers"]
            ]:
                await asyncio.sleep(0.05)
        listed = await get(f"{local}/payments/api/webhooks/providers/", kit.API_KEY)
        assert {p["name"]: p["webhook_url"] for p in listed["providers"]}["twilio"] == urls["twilio"]
        body, headers = twilio_post(urls["twilio"], "SM" + "2" * 32)
        assert (await post(urls["twilio"], body, headers))[0] == 200
        await dev.wait_line(r"twilio\s+delivered\s+SM2{32}\s+verified  upstream 204", start=ready)
    finally:
        code = await dev.stop()
    assert code == 0, dev.lines["err"]
    [started] = starts(fake)  # one agent, stopped with the gateway
    assert started["argv"][:4] == ["start", "--none", "--log", "stdout"] and "eu" in started["argv"]
    async with asyncio.timeout(10):
        while alive(started["pid"]):
            await asyncio.sleep(0.05)
    output = "\n".join(dev.lines["out"] + dev.lines["err"])
    for secret in (*kit.ALL_SECRETS, TWILIO_TOKEN, NGROK_TOKEN):
        assert secret not in output
    assert "Traceback" not in output


async def test_dev_json_prints_the_cloudevents_on_stdout(kit, setup, env, upstream):
    dev = await Dev.start("--config", str(setup["config"]), "--json", env=env)
    try:
        await dev.wait_line(r"Local only: providers cannot reach", stream="err")
        await dev.wait_line("Ready: one line per webhook", stream="err")
        assert dev.lines["out"] == []  # the banner is on stderr: stdout is JSON lines only
        local = setup["settings"].webhook_url("stripe")
        body, headers = signed_stripe(kit, setup["settings"], "evt_json_1")
        assert (await post(local, body, headers))[0] == 200
        await dev.wait_line(r"^\{")
        assert (await post(local, body, {}))[0] == 401
        await dev.wait_line(r"rejected missing_signature \(401\)", stream="err")
    finally:
        assert await dev.stop() == 0
    [line] = dev.lines["out"]  # the rejection went to stderr
    event = json.loads(line)
    assert event == upstream.events[-1].event  # exactly what the upstream received
    assert event["specversion"] == "1.0" and event["id"] == "evt_json_1" and event["data"]["verified"] is True


async def test_dev_ngrok_without_a_token_says_what_to_do(setup, env, tmp_path):
    fake = make_fake(tmp_path)
    del env["NGROK_AUTHTOKEN"]
    code, out, err = await finished("--config", str(setup["config"]), "--ngrok", "--ngrok-path", str(fake), env=env)
    assert code == 2 and out == ""
    assert "--ngrok needs an ngrok auth token" in err and TOKEN_URL in err
    assert "export NGROK_AUTHTOKEN=<token>" in err and "ngrok config add-authtoken <token>" in err
    assert str(tmp_path / "xdg" / "ngrok" / "ngrok.yml") in err  # where it looked
    assert "run local-only, without a tunnel: webhook-gateway dev" in err
    assert setup["settings"].webhook_url("<provider>") in err
    assert starts(fake) == [] and "Traceback" not in err


async def test_dev_ngrok_token_refused_by_ngrok_is_one_line_and_exit_2(setup, env, tmp_path):
    fake = make_fake(tmp_path, "authfail")
    code, out, err = await finished("--config", str(setup["config"]), "--ngrok", "--ngrok-path", str(fake), env=env)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("webhook-gateway: ngrok rejected the auth token (ERR_NGROK_4018): authentication failed")
    assert TOKEN_URL in line and NGROK_TOKEN not in line
    assert len(starts(fake)) == 1


async def test_dev_ngrok_taken_domain_is_one_line_and_the_agent_stops(setup, env, tmp_path):
    fake = make_fake(tmp_path)
    args = ("--config", str(setup["config"]), "--ngrok", "--ngrok-path", str(fake), "--domain", "taken.example.com")
    code, out, err = await finished(*args, env=env)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("webhook-gateway: ngrok refused the domain taken.example.com: ")
    assert "is already online" in line and line.endswith("(ERR_NGROK_334)")
    [started] = starts(fake)
    assert started["argv"][:2] == ["start", "--none"]
    deadline = time.monotonic() + 10
    while alive(started["pid"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(started["pid"])


async def test_dev_ngrok_without_binary_or_download_is_one_line_and_exit_2(kit, setup, env, tmp_path):
    """No ngrok anywhere (pyngrok's own ``ngrok`` script on PATH does not count) and the download
    fails: here it goes to a loopback proxy that refuses, so nothing leaves the machine."""
    closed = f"http://127.0.0.1:{kit.free_port()}"
    env = {k: v for k, v in env.items() if k.lower() != "no_proxy"}
    env |= {"PATH": str(Path(sys.executable).parent), "https_proxy": closed, "HTTPS_PROXY": closed}
    code, out, err = await finished("--config", str(setup["config"]), "--ngrok", env=env)
    binary = tmp_path / "xdg" / "ngrok" / "ngrok"
    assert code == 2 and out == ""
    first, line = err.splitlines()
    assert first == f"webhook-gateway: downloading ngrok to {binary} (first use) ..."
    assert line.startswith(f"webhook-gateway: no ngrok binary at {binary} and it could not be downloaded (")
    assert line.endswith("; install ngrok (https://ngrok.com/download) and pass --ngrok-path")
    assert "Connection refused" in line and not binary.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--ngrok", "--ngrok-path", "/nonexistent/ngrok"),
            "--ngrok-path /nonexistent/ngrok: no executable ngrok there",
        ),
        (("--region", "eu"), "--domain, --region, --authtoken and --ngrok-path need --ngrok"),
        (("--forward-to", "ftp://x"), "--forward-to must start with http:// or https://, got 'ftp://x'"),
        (("--workers", "0"), "--workers must be >= 1"),
    ],
)
async def test_dev_bad_options_are_one_line_and_exit_2(setup, env, args, message):
    code, out, err = await finished("--config", str(setup["config"]), *args, env=env)
    assert (code, out, err) == (2, "", f"webhook-gateway: {message}\n")


async def test_dev_ngrok_with_any_free_port_is_refused(kit, env, tmp_path, upstream):
    config = kit.write_config(tmp_path, upstream.url, listen={"port": 0})
    code, out, err = await finished("--config", str(config), "--ngrok", env=env)
    assert (code, out) == (2, "") and "--ngrok needs a fixed listen.port" in err


async def test_dev_forward_to_overrides_the_upstream(kit, setup, env, upstream, aiohttp_server):
    from aiohttp import web

    seen: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(json.loads(await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hooks", receive)
    other = await aiohttp_server(app)
    target = str(other.make_url("/hooks"))
    dev = await Dev.start("--config", str(setup["config"]), "--forward-to", target, env=env)
    try:
        await dev.wait_line(rf"Upstream:  {re.escape(target)}$")
        body, headers = signed_stripe(kit, setup["settings"], "evt_fwd_1")
        assert (await post(setup["settings"].webhook_url("stripe"), body, headers))[0] == 200
        await dev.wait_line(r"evt_fwd_1\s+verified  upstream 202")
    finally:
        assert await dev.stop() == 0
    assert [e["id"] for e in seen] == ["evt_fwd_1"] and upstream.events == []


async def test_dev_workers_open_one_tunnel_in_the_parent(kit, setup, env, tmp_path):
    fake = make_fake(tmp_path)
    args = ("--config", str(setup["config"]), "--ngrok", "--ngrok-path", str(fake), "--workers", "2")
    dev = await Dev.start(*args, env=env)
    try:
        tunnel = (await dev.wait_line(r"Tunnel:\s+(\S+) ->"))[1]
        await dev.wait_line("Ready: one line per webhook")
        for i in range(6):  # new connections: the kernel spreads them over both workers
            body, headers = signed_stripe(kit, setup["settings"], f"evt_w_{i}")
            assert (await post(f"{tunnel}/payments/api/webhooks/stripe/", body, headers))[0] == 200
        for i in range(6):
            await dev.wait_line(rf"evt_w_{i}\s+verified  upstream 204")
        health = await get(f"{tunnel}/payments/api/webhooks/health/", kit.API_KEY)
        assert health["tunnel"]["public_url"] == tunnel and health["tunnel"]["up"] is True
    finally:
        assert await dev.stop() == 0
    assert len(starts(fake)) == 1
    assert sum("Ready: one line per webhook" in line for line in dev.lines["out"]) == 1


def test_authtoken_lookup_order(tmp_path):
    config = tmp_path / "ngrok.yml"
    assert find_authtoken(None, {}, str(config)) is None  # no file
    config.write_text("version: '3'\nagent:\n  authtoken: from-v3-file\n")
    assert find_authtoken(None, {}, str(config)) == "from-v3-file"
    assert find_authtoken(None, {"NGROK_AUTHTOKEN": "from-env"}, str(config)) == "from-env"
    assert find_authtoken("from-flag", {"NGROK_AUTHTOKEN": "from-env"}, str(config)) == "from-flag"
    config.write_text("authtoken: from-v2-file\n")
    assert find_authtoken(None, {}, str(config)) == "from-v2-file"
    for text in ("version: '3'\nagent: {}\n", "[not, a, mapping]", "agent: {authtoken: ''}", ": : bad yaml :"):
        config.write_text(text)
        assert find_authtoken(None, {}, str(config)) is None
