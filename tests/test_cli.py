"""``webhook-gateway check|sign|send``, run as the user runs them: ``python -m gateway`` in a subprocess."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
import sys
import time

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.providers.verifier import verify


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=30)


async def acli(*args: str) -> tuple[int, str, str]:
    """The CLI, without blocking the event loop that serves the test gateway and upstream."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def config(kit, tmp_path, upstream):
    return kit.write_config(tmp_path, upstream.url)


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("webhook-gateway ")


def test_check_lists_providers_without_secrets(kit, config):
    result = cli("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"{config}: OK (6 providers" in result.stdout
    for name in kit.SECRETS:
        assert f"/payments/api/webhooks/{name}/" in result.stdout
    for secret in kit.ALL_SECRETS:
        assert secret not in result.stdout + result.stderr


def test_check_without_a_config_checks_the_embedded_demo():
    result = cli("check")
    assert result.returncode == 0
    assert "<embedded demo.yaml>: OK" in result.stdout


def test_sign_prints_headers_the_gateway_accepts_offline(kit, config):
    result = cli("sign", "stripe", "--config", str(config))
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    assert headers["Stripe-Signature"].startswith("t=")
    settings = kit.build(kit.config_dict("http://127.0.0.1:9/events"))
    verified = verify(
        settings.providers["stripe"],
        CIMultiDictProxy(CIMultiDict(headers)),
        body.strip().encode(),
        settings.webhook_url("stripe"),
        time.time(),
    )
    assert verified.secret_index == 0


def test_sign_as_curl(config):
    result = cli("sign", "github", "--config", str(config), "--curl")
    assert result.returncode == 0
    words = shlex.split(result.stdout)
    assert words[:4] == ["curl", "-sS", "-X", "POST"]
    assert "X-GitHub-Event: push" in words


async def test_send_delivers_through_a_real_gateway(gateway, config, kit):
    base = f"http://{gateway.host}:{gateway.port}"
    code, out, err = await acli("send", "stripe", "--config", str(config), "--url", base)
    assert code == 0, err
    assert "HTTP 200" in out and '"forwarded"' in out
    [received] = gateway.upstream.events
    assert received.event["type"] == "stripe.payment_intent.succeeded"
    assert received.event["data"]["payment"]["amount"] == "20.00"


async def test_send_with_a_body_file(gateway, config, kit, tmp_path):
    body = tmp_path / "event.json"
    body.write_bytes(kit.stripe_body("evt_from_file"))
    base = f"http://{gateway.host}:{gateway.port}"
    code, out, err = await acli("send", "stripe", "--config", str(config), "--url", base, "--body", str(body))
    assert code == 0, err
    assert gateway.upstream.ids() == ["evt_from_file"]
    code, out, _ = await acli("send", "stripe", "--config", str(config), "--url", base, "--body", str(body))
    assert code == 0 and '"duplicate"' in out


async def test_send_reports_a_rejection_with_exit_1(gateway, kit, tmp_path):
    other = kit.write_config(
        tmp_path, "http://127.0.0.1:9/e", name="other.yaml", providers={"stripe": {"secrets": ["whsec_other"]}}
    )
    base = f"http://{gateway.host}:{gateway.port}"
    code, out, _ = await acli("send", "stripe", "--config", str(other), "--url", base)
    assert code == 1
    assert "HTTP 401" in out and "invalid_signature" in out


def test_send_to_nothing_fails_cleanly(kit, config):
    result = cli("send", "stripe", "--config", str(config), "--url", f"http://127.0.0.1:{kit.free_port()}")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "Traceback" not in result.stderr


def test_unknown_provider_and_secret_index(config):
    result = cli("sign", "paypal", "--config", str(config))
    assert result.returncode == 1 and "unknown provider 'paypal'" in result.stderr
    result = cli("sign", "stripe", "--config", str(config), "--secret", "3")
    assert result.returncode == 1 and "1 secret(s)" in result.stderr


def test_usage_errors_exit_2():
    assert cli().returncode == 2
    assert cli("frobnicate").returncode == 2
