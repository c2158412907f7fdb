"""CPU cost per request of one target, for development on a shared, noisy machine.

``python bench/cost.py [--targets gateway/sync_memory/1w,handwritten] [--repeats 5] [--duration 3]``
starts the bench upstream and pools once, then for each repeat and each target: a fresh target
process, a closed-loop warm-up, and a closed-loop window after which it prints the server's own
CPU time per answered request (user+sys of its process tree, from /proc). CPU time is what other
processes on the box hardly move, so its median over repeats is comparable across code changes;
req/s printed beside it is not. With ``--profile FILE`` the first gateway target runs under
cProfile (``PROFILE_OUT``) instead, and FILE gets the stats of the measured window.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
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
    a = p.parse_args()
    args = b.parse_args(["--duration", str(a.duration), "--warmup", str(a.warmup), "--runs", "1",
                         "--connections", str(a.connections)])  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="webhook-cost-"))
    gw = Path(sys.executable).parent / "webhook-gateway"
    bench = b.Bench(args, tmp, gateway_bin=str(gw), pg_url=args.pg_url)
    wanted = a.targets.split(",")
    scen = sorted({n.split("/")[1] for n in wanted if n.startswith("gateway/")})
    targets = [t for t in b.gateway_targets(scen, [1]) + b.baseline_targets() if t.name in wanted]
    services = [bench.start_upstream()]
    try:
        if any(t.name == "handwritten_redis" or (t.scenario and b.SCENARIOS[t.scenario].uses_redis) for t in targets):
            r = bench.start_redis()
            if r:
                services.append(r)
        bench.sut_port = b.free_port()
        bench.make_pools()
        costs: dict[str, list[float]] = {t.name: [] for t in targets}
        for rep in range(a.repeats):
            for t in targets:
                proc, url, _ = bench.start_target(t, f"c{rep}-{uuid.uuid4().hex[:6]}")
                try:
                    pool = bench.pools[t.pool]
                    warm = b.run_wrk(args, url, pool, "0", a.warmup, 0, t.wrk_mode)
                    before = b.tree_cpu_seconds(proc.pid)
                    m = b.run_wrk(args, url, pool, warm.ends, a.duration, 0, t.wrk_mode)
                    cpu = b.tree_cpu_seconds(proc.pid) - before
                    errs = sum(m.raw["errors"].values())
                    us = cpu / m.raw["requests"] * 1e6
                    costs[t.name].append(us)
                    print(f"{t.name:28s} rep {rep}: {m.rps:8,.0f} req/s  {us:6.1f} CPU us/req  errors {errs}",
                          flush=True)  # fmt: skip
                finally:
                    proc.stop()
        for name, xs in costs.items():
            print(f"{name:28s} median {statistics.median(xs):6.1f} CPU us/req  (min {min(xs):.1f}, n={len(xs)})")
    finally:
        for s in reversed(services):
            s.stop()
        b._stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
