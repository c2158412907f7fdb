"""Gateways and an upstream as real processes, and a sender that retries like a provider.

``GatewayProcess`` runs ``python -m gateway run --config F`` and can be SIGKILLed and restarted
on the same port. ``UpstreamProcess`` runs this file as a script (``python helpers_proc.py
upstream PORT``): a small aiohttp upstream that counts every CloudEvent id it accepted and can
be switched to failing or slow answers over HTTP (``POST /_mode``), so it outlives any gateway.
``send_until_accepted`` posts signed webhooks with bounded concurrency and, like a provider,
retries every one that did not get a 2xx, until all are accepted or the deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


async def _get_json(url: str, timeout: float = 2.0) -> Any:
    import aiohttp

    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path | None, timeout: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text("utf-8", "replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before answering {url}:\n{tail}")
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            status, _ = await _get_json(url, timeout=0.5)
            if status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        await asyncio.sleep(0.05)


class GatewayProcess:
    """``webhook-gateway run --config F`` in a subprocess, its output in ``log``."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self, timeout: float = 20.0) -> GatewayProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.starts += 1
        await _wait_http(f"{self.base}/healthz", self.proc, self.log, timeout)
        return self

    def kill9(self) -> None:
        """SIGKILL: no drain, no cleanup, leases and claims left behind as after a crash."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class UpstreamProcess:
    """The standalone upstream (this file's ``__main__``) on ``port``."""

    def __init__(self, port: int, log: Path | None = None) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}/events"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> UpstreamProcess:
        args = [sys.executable, __file__, "upstream", str(self.port)]
        if self.log is None:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
                self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        await _wait_http(f"http://127.0.0.1:{self.port}/_state", self.proc, self.log, 15)
        return self

    async def counts(self) -> dict[str, int]:
        """How many times each event id was accepted (answered 2xx)."""
        _, state = await _get_json(f"http://127.0.0.1:{self.port}/_state")
        counts: dict[str, int] = state["counts"]
        return counts

    async def state(self) -> dict[str, Any]:
        _, state = await _get_json(f"http://127.0.0.1:{self.port}/_state")
        result: dict[str, Any] = state
        return result

    async def mode(self, status: int = 204, delay: float = 0.0) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{self.port}/_mode"
            async with session.post(url, json={"status": status, "delay": delay}) as resp:
                assert resp.status == 200

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@dataclass
class SendReport:
    accepted: dict[str, int] = field(default_factory=dict)  # event id -> the 2xx status it got
    refused: Counter[str] = field(default_factory=Counter)  # non-2xx statuses and connection errors
    requests: int = 0
    answers: list[tuple[float, int]] = field(default_factory=list)  # (sent at, status) of every answer


async def send_until_accepted(
    targets: list[str],
    bodies: dict[str, bytes],
    headers_for: Callable[[bytes], dict[str, str]],
    *,
    path: str = "/payments/api/webhooks/stripe/",
    concurrency: int = 20,
    deadline: float = 30.0,
    pause: float = 0.1,
    report: SendReport | None = None,
) -> SendReport:
    """Post every body (event ``i`` to ``targets[i % len]``, then the next target on each retry)
    until it gets a 2xx, freshly signed each time. ``report`` may be watched while this runs."""
    import aiohttp

    report = report or SendReport()
    slots = asyncio.Semaphore(concurrency)
    give_up = time.monotonic() + deadline
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(index: int, event_id: str, body: bytes) -> None:
            attempt = 0
            while time.monotonic() < give_up:
                target = targets[(index + attempt) % len(targets)]
                attempt += 1
                async with slots:
                    report.requests += 1
                    sent = time.monotonic()
                    try:
                        async with session.post(target + path, data=body, headers=headers_for(body)) as resp:
                            await resp.read()
                            status = resp.status
                    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                        report.refused[type(exc).__name__] += 1
                        status = 0
                if status:
                    report.answers.append((sent, status))
                if 200 <= status < 300:
                    report.accepted[event_id] = status
                    return
                if status:
                    report.refused[str(status)] += 1
                await asyncio.sleep(pause)

        await asyncio.gather(*(one(i, eid, body) for i, (eid, body) in enumerate(bodies.items())))
    return report


# --------------------------------------------------------------------------- the upstream script


def _upstream_main(port: int) -> None:
    from aiohttp import web

    counts: dict[str, int] = {}
    stats = {"attempts": 0, "failed": 0}
    mode: dict[str, Any] = {"status": 204, "delay": 0.0}

    async def events(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        stats["attempts"] += 1
        if mode["delay"]:
            await asyncio.sleep(mode["delay"])
        if mode["status"] >= 300:
            stats["failed"] += 1
            return web.json_response({"error": "scripted"}, status=mode["status"])
        event_id = json.loads(raw)["id"]
        counts[event_id] = counts.get(event_id, 0) + 1
        return web.Response(status=204)

    async def state(request: web.Request) -> web.StreamResponse:
        return web.json_response({"counts": counts, **stats})

    async def set_mode(request: web.Request) -> web.StreamResponse:
        mode.update(await request.json())
        return web.json_response(mode)

    app = web.Application()
    app.router.add_post("/events", events)
    app.router.add_get("/_state", state)
    app.router.add_post("/_mode", set_mode)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["upstream"]:
        _upstream_main(int(sys.argv[2]))
