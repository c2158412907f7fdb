"""CPU cost per request of one target, for development on a shared, noisy machine.

``python bench/cost.py [--targets gateway/sync_memory/1w,handwritten] [--repeats 5] [--duration 3]
[--gateway-path DIR,DIR2]`` starts the bench upstream and pools once, then for each repeat and each
target: a fresh target process, a closed-loop warm-up, and a closed-loop window after which it
prints req/s and the server's own CPU time per answered request (user + sys of its process tree,
from /proc), with the kernel's part of it beside. CPU time is what other processes on the box
hardly move, so its median over repeats is comparable across code changes. ``--gateway-path``
runs each gateway target once per tree of the gateway package (a worktree of another commit, put
first on ``PYTHONPATH``; ``.`` is this checkout), so two versions compare in interleaved runs.
``--pg-waits`` also samples what the bench database's busy backends wait for during each window
(``pg_stat_activity`` every 20 ms: ``CPU`` when running, else the wait event, such as ``IO:WALSync``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import statistics
import sys
import tempfile
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="gateway/sync_memory/1w,handwritten")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--gateway-path", default="", help="comma-separated trees of the gateway to compare")
    p.add_argument("--pg-waits", action="store_true", help="sample PostgreSQL's wait events in each window")
    a = p.parse_args()
    args = b.parse_args(["--duration", str(a.duration), "--warmup", str(a.warmup), "--runs", "1",
                         "--connections", str(a.connections)])  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="webhook-cost-"))
    gw = Path(sys.executable).parent / "webhook-gateway"
    bench = b.Bench(args, tmp, gateway_bin=str(gw), pg_url=args.pg_url)
    wanted = a.targets.split(",")
    scen = sorted({n.split("/")[1] for n in wanted if n.startswith("gateway/")})
    targets = [t for t in b.gateway_targets(scen, [1]) + b.baseline_targets() if t.name in wanted]
    runs = [run for t in targets for run in _variants(t, a.gateway_path)]
    services = [bench.start_upstream()]
    try:
        if any(t.name == "handwritten_redis" or (t.scenario and b.SCENARIOS[t.scenario].uses_redis) for t in targets):
            r = bench.start_redis()
            if r:
                services.append(r)
        bench.sut_port = b.free_port()
        bench.make_pools()
        pg = _postmaster() if any(t.scenario and b.SCENARIOS[t.scenario].uses_pg for t in targets) else 0
        costs: dict[str, list[tuple[float, float, float, float]]] = {label: [] for label, _, _ in runs}
        waits: dict[str, collections.Counter[str]] = {label: collections.Counter() for label, _, _ in runs}
        for rep in range(a.repeats):
            for label, t, env in runs if rep % 2 == 0 else reversed(runs):  # drift hits every target alike
                proc, url, _ = bench.start_target(t, f"c{rep}-{uuid.uuid4().hex[:6]}", env)
                try:
                    pool = bench.pools[t.pool]
                    warm = b.run_wrk(args, url, pool, "0", a.warmup, 0, t.wrk_mode)
                    before, before_sys = b.tree_cpu(proc.pid)
                    pg_before = b.tree_cpu(pg)[0] if pg else 0.0
                    done_before = b.pg_delivered(args.pg_url) if pg else 0
                    with _WaitSampler(args.pg_url if pg and a.pg_waits else "") as sampled:
                        m = b.run_wrk(args, url, pool, warm.ends, a.duration, 0, t.wrk_mode)
                    waits[label].update(sampled.counts)
                    after, after_sys = b.tree_cpu(proc.pid)
                    pg_us = ((b.tree_cpu(pg)[0] - pg_before) / m.raw["requests"] * 1e6) if pg else 0.0
                    delivered = (b.pg_delivered(args.pg_url) - done_before) / m.raw["requests"] if pg else 1.0
                    cpu, kernel = after - before, after_sys - before_sys
                    errs = sum(m.raw["errors"].values())
                    us, kus = cpu / m.raw["requests"] * 1e6, kernel / m.raw["requests"] * 1e6
                    costs[label].append((m.rps, us, kus, pg_us))
                    print(f"{label:40s} rep {rep}: {m.rps:8,.0f} req/s  {us:6.1f} CPU us/req ({kus:5.1f} kernel)"
                          f"  PostgreSQL {pg_us:6.1f} us/req  delivered {delivered:4.0%}  errors {errs}",
                          flush=True)  # fmt: skip
                    if sampled.counts:
                        print(f"{'':40s}        PostgreSQL waits: {_shares(sampled.counts)}", flush=True)
                finally:
                    proc.stop()
        for label, xs in costs.items():
            rps, us, kus, pg_us = (statistics.median(x[i] for x in xs) for i in range(4))
            print(f"{label:40s} median {rps:8,.0f} req/s  {us:6.1f} CPU us/req ({kus:5.1f} kernel)"
                  f"  PostgreSQL {pg_us:6.1f} us/req"
                  f"  (min {min(x[1] for x in xs):.1f}, n={len(xs)})")  # fmt: skip
            if waits[label]:
                print(f"{label:40s} PostgreSQL waits, all windows: {_shares(waits[label])}")
    finally:
        for s in reversed(services):
            s.stop()
        b._stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


class _WaitSampler:
    """While its ``with`` block runs, counts what the database's active backends are doing, every
    20 ms, from a thread of its own: ``CPU`` (no wait event) or ``type:event``. No URL: no-op."""

    _QUERY = (
        "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity"
        " WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)

    def __enter__(self) -> _WaitSampler:
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    async def _sample(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url, timeout=5)
        try:
            while not self._stop.is_set():
                self.counts.update(row[0] for row in await conn.fetch(self._QUERY))
                await asyncio.sleep(0.02)
        finally:
            await conn.close()


def _shares(counts: collections.Counter[str]) -> str:
    total = sum(counts.values())
    return ", ".join(f"{what} {n / total:.0%}" for what, n in counts.most_common(6))


def _postmaster() -> int:
    """The local PostgreSQL server's postmaster pid (its tree is every backend), or 0."""
    import subprocess

    out = subprocess.run(["pgrep", "-o", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def _variants(t: b.Target, trees: str) -> list[tuple[str, b.Target, dict[str, str] | None]]:
    """``(label, target, env)``: a gateway target once per tree of ``--gateway-path``."""
    if t.kind != "gateway" or not trees:
        return [(t.name, t, None)]
    out: list[tuple[str, b.Target, dict[str, str] | None]] = []
    for tree in trees.split(","):
        if tree == ".":
            out.append((f"{t.name}@.", t, None))
            continue
        if not (Path(tree) / "gateway" / "__init__.py").is_file():  # else the checkout's own code runs, unnoticed
            raise SystemExit(f"--gateway-path: {tree} holds no gateway package (git worktree add {tree} <commit>)")
        path = os.pathsep.join(filter(None, (str(Path(tree).resolve()), os.environ.get("PYTHONPATH"))))
        out.append((f"{t.name}@{tree}", t, {**os.environ, "PYTHONPATH": path}))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
