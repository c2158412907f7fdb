"""Instructions per webhook: a deterministic A/B of the gateway and the hand-written baseline (a).

Wall-clock and CPU-time figures on a shared 2-core machine move by +-20 % from run to run (see
``bench/README.md``); a change worth 3 % cannot be seen in them. This counts the user-space
instructions each server executes per webhook instead, under valgrind's cachegrind, over real
loopback sockets: the same server process as ``make bench`` runs (``webhook-gateway run`` with the
``sync_memory`` bench config, or ``bench/baselines/handwritten.py``), the same signed Stripe pool,
the same nginx upstream. Each target runs twice, answering 1 and then ``N + 1`` requests after the
same warm-up; the difference over ``N`` is its instructions per webhook (start-up and shutdown
cancel out). Two runs of the same code agree to within about 0.2 %.

What it does not count: time in the kernel (the socket reads and writes, the same four per webhook
in both servers: ``strace -c`` shows them), and how many cycles an instruction takes (interpreted
Python runs fewer instructions per cycle than C). So it ranks changes to the same code; it does not
replace ``make bench``'s same-run ratios. valgrind's CPU model also skips some instruction-set
extensions, so OpenSSL's SHA-256 runs a generic path here (~70k instructions for one 1.7 KB HMAC).

    bash bench/run.sh ...   # not needed; run directly (valgrind from Debian: apt-get install valgrind)
    .venv/bin/python bench/instructions.py [--requests 2000] [--targets gateway,handwritten]

About a minute per target on this machine. Another tree of the gateway (a branch's worktree) is counted with
``--gateway-path DIR`` (put first on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bench as B

VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
WARM = 500


def requests_of(pool: Path, count: int, skip: int) -> list[bytes]:
    """``count`` raw HTTP requests from a pool file (``bench/gen.py``'s format), after ``skip``."""
    out: list[bytes] = []
    with pool.open("rb") as f:
        for i, line in enumerate(f):
            if i < skip:
                continue
            if len(out) >= count:
                break
            fields = line.rstrip(b"\n").split(b"\t")
            blank = fields.index(b"", 1)
            body = b"\t".join(fields[blank + 1 :])
            head = b"".join(h + b"\r\n" for h in fields[1:blank])
            out.append(
                b"POST " + B.WEBHOOK_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head
                + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )  # fmt: skip
    return out


async def send(port: int, requests: list[bytes], connections: int = 64) -> int:
    """Send every request over ``connections`` keep-alive connections; returns the non-2xx count."""
    bad = 0

    async def one(batch: list[bytes]) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for raw in batch:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            bad += not head.startswith(b"HTTP/1.1 2")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
        writer.close()

    await asyncio.gather(*(one(requests[i::connections]) for i in range(connections)))
    return bad


def count(b: B.Bench, target: str, pool: Path, n: int, env: dict[str, str]) -> int:
    """Instructions the server executed in a life that answered ``WARM + n`` requests."""
    port = B.free_port()
    log = b.tmp / f"{target}-{n}.log"
    if target == "handwritten":
        upstream = f"http://127.0.0.1:{b.upstream_port}/events"
        cmd = [sys.executable, str(B.HANDWRITTEN), "--port", str(port), "--upstream", upstream,
               "--secret", B.SECRET, "--tolerance", str(B.TOLERANCE)]  # fmt: skip
        ready = None
    else:
        cfg = b.write_config(b.scenario_config(B.SCENARIOS["sync_memory"], port, "icount:"), f"icount-{n}")
        cmd = [sys.executable, "-m", "gateway.cli", "run", "--config", str(cfg)]
        ready = "/healthz"
    proc = B.Proc(f"{target}-{n}", [*VALGRIND, *cmd], B.SERVER_CPU, log, env=env)
    try:
        B.wait_ready(proc, port, ready, timeout=600)
        asyncio.run(send(port, requests_of(pool, WARM, 0)))
        bad = asyncio.run(send(port, requests_of(pool, n, WARM)))
        if bad:
            raise RuntimeError(f"{target}: {bad} of {n} answers were not 2xx (see {log})")
    finally:
        proc.stop(timeout=300)
    found = re.search(r"I\s+refs:\s+([\d,]+)", log.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"{target}: no cachegrind total in {log}")
    return int(found[1].replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="User-space instructions per webhook, under cachegrind.")
    p.add_argument("--requests", type=int, default=2000, help="webhooks counted per target (default 2000)")
    p.add_argument("--targets", default="gateway,handwritten", help="gateway, handwritten, or both")
    p.add_argument("--gateway-path", default="", help="count this tree's gateway package instead")
    a = p.parse_args(argv)
    for tool in ("valgrind", "nginx", "taskset"):
        if shutil.which(tool) is None:
            print(f"instructions: {tool} not found (apt-get install valgrind; bench/run.sh installs nginx)")
            return 2
    env = dict(os.environ)
    if a.gateway_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (a.gateway_path, env.get("PYTHONPATH"))))
    tmp = Path(tempfile.mkdtemp(prefix="webhook-icount-"))
    os.chdir(tmp)  # `python -m gateway.cli` puts the working directory first on sys.path
    where = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"gateway package: {where}", flush=True)
    b = B.Bench(B.parse_args(["--runs", "1"]), tmp, gateway_bin="", pg_url="")
    upstream = b.start_upstream()
    try:
        pool = Path(B._generate(str(b.write_config(b.base_config(B.free_port()), "gen")), WARM + a.requests + 10,
                                str(tmp / "pool.txt"), 0.0)["path"])  # fmt: skip
        for target in a.targets.split(","):
            one, many = count(b, target, pool, 1, env), count(b, target, pool, a.requests + 1, env)
            per = (many - one) / a.requests
            print(f"{target}: {per:,.0f} instructions per webhook (user space; {a.requests} webhooks)", flush=True)
    finally:
        upstream.stop()
        B._stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
