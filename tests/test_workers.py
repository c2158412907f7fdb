"""``run --workers 2``: SO_REUSEPORT workers under a supervisor; SIGHUP reloads, SIGTERM drains."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time

import aiohttp
import pytest

from gateway.providers.signer import sign

pytestmark = pytest.mark.slow


async def test_two_workers_share_the_port_reload_on_sighup_and_stop_on_sigterm(tmp_path, upstream, kit):
    port = kit.free_port()
    base = f"http://127.0.0.1:{port}"
    config = kit.write_config(tmp_path, upstream.url, listen={"port": port}, public_url=base)
    settings = kit.build(kit.config_dict(upstream.url, listen={"port": port}, public_url=base))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--config", str(config), "--workers", "2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with session.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline and proc.returncode is None, "workers did not start"
                await asyncio.sleep(0.1)
            for i in range(6):  # new connections each time: the kernel spreads them over workers
                body = kit.stripe_body(f"evt_w{i}")
                headers = sign(settings.providers["stripe"], body, settings.webhook_url("stripe"))
                url = f"{base}/payments/api/webhooks/stripe/"
                async with aiohttp.ClientSession() as fresh, fresh.post(url, data=body, headers=headers) as r:
                    assert r.status == 200, await r.text()

            proc.send_signal(signal.SIGHUP)  # the supervisor passes it on; nobody dies

            async def metrics() -> str:
                async with session.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    return await resp.text()

            # /metrics on any worker sums every worker's counters: both workers have reloaded.
            reloads = r'webhook_gateway_config_reloads_total\{result="ok"\} (\S+)'
            deadline = time.monotonic() + 15
            while not ((m := re.search(reloads, text := await metrics())) and float(m.group(1)) == 2.0):
                assert time.monotonic() < deadline, f"SIGHUP did not reload both workers: {text[:500]}"
                await asyncio.sleep(0.1)
            assert proc.returncode is None
            match = re.search(r'webhook_gateway_requests_total\{outcome="forwarded",provider="stripe"\} (\S+)', text)
            assert match and float(match.group(1)) == 6.0, text[:500]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert upstream.ids() == [f"evt_w{i}" for i in range(6)]
    finally:
        if proc.returncode is None:  # the workers too: killed alone, the supervisor left them running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.fixture
def own_signals():
    """``supervise`` installs the process's SIGTERM/SIGINT/SIGHUP handlers: give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_stop_that_reaches_a_worker_still_starting_is_a_clean_exit(tmp_path):
    """SIGTERM while a worker has no handler yet: it dies of the stop it was sent, which is the
    stop asked for, not a failure (the group exited 143)."""
    import subprocess

    script = (
        "import sys, time; from gateway.workers import supervise; "
        "sys.exit(supervise(1, lambda i: time.sleep(30) or 0))"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(tmp_path), env=env)
    try:
        deadline = time.monotonic() + 10
        while not subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.strip():
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_worker_that_crashes_says_why(capfd, own_signals):
    """A worker's exception was lost: os._exit ended the process before Python printed it, and the
    log said only "exited with 1". The traceback now goes to stderr, and a crash at start stops
    the group (restarting would loop)."""
    from gateway.workers import supervise

    def serve(index: int) -> int:
        raise RuntimeError("boom: the reason a worker died")

    assert supervise(1, serve) == 1
    err = capfd.readouterr().err
    assert "RuntimeError: boom: the reason a worker died" in err and "Traceback" in err
    assert "exited with 1 at start; stopping" in err


def test_a_worker_killed_by_a_signal_is_not_a_clean_exit(capfd, own_signals):
    import signal as _signal

    from gateway.workers import supervise

    def serve(index: int) -> int:
        os.kill(os.getpid(), _signal.SIGKILL)
        return 0

    assert supervise(1, serve) == 128 + _signal.SIGKILL


def test_a_sighup_to_a_worker_still_starting_is_kept_for_its_server():
    """The worker used to ignore SIGHUP until its server installed a handler: a reload sent
    while it started was lost (one of two workers reloaded). Now it is kept, and taken once."""
    import signal as _signal

    from gateway import workers

    workers._remember_reload(_signal.SIGHUP, None)
    assert workers.reload_pending() is True
    assert workers.reload_pending() is False
