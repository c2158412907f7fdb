"""``bench/soak.py``'s verdict: a clean run below the target load is not a pass."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import soak


def run(rps: list[float], rss: list[float], non2xx: int = 0) -> dict[str, object]:
    samples = [
        {"t_s": 30 * (i + 1), "sent": 30_000, "rss_mib": m, "rps": r, "socket_errors": 0, "non2xx": 0}
        for i, (r, m) in enumerate(zip(rps, rss, strict=True))
    ]
    samples[-1]["non2xx"] = non2xx
    return soak.verdict(1000.0, {"samples": samples, "outcomes": {"forwarded": 1.0}})


def test_a_clean_run_at_the_target_load_passes() -> None:
    v = run([1000, 990, 960], [100, 101, 102])
    assert (v["label"], v["pass"], v["kept_rate"]) == ("PASS", True, True)


def test_a_clean_run_below_the_target_load_is_reported_as_such() -> None:
    v = run([1000, 700, 600], [100, 101, 102])
    assert (v["label"], v["pass"], v["kept_rate"], v["flat"]) == ("BELOW TARGET LOAD", False, False, True)


def test_a_drift_or_an_error_fails_whatever_the_load() -> None:
    assert run([1000, 1000, 1000], [100, 101, 120])["label"] == "FAIL"
    assert run([1000, 1000, 1000], [100, 101, 102], non2xx=1)["label"] == "FAIL"
    assert run([500, 500, 500], [100, 130, 102])["label"] == "FAIL"


def test_the_warm_up_lasts_until_the_dedup_ttl_has_passed() -> None:
    """Until then the store of ids still grows by design: that growth is not a drift."""
    samples = [
        {"t_s": 10 * (i + 1), "sent": 30_000, "rss_mib": m, "rps": 1000, "socket_errors": 0, "non2xx": 0}
        for i, m in enumerate([60, 70, 80, 81, 81, 82])
    ]
    assert soak.warmed(samples) == 0  # 20,000 requests were sent in the first window
    assert soak.warmed(samples, settle_s=30) == 2
    v = soak.verdict(1000.0, {"samples": samples, "outcomes": {"queued": 1.0}, "dedup_ttl_s": 30})
    assert (v["label"], v["warm_up_s"], v["rss_first_mib"]) == ("PASS", 30, 80)
    assert soak.verdict(1000.0, {"samples": samples, "outcomes": {"queued": 1.0}})["label"] == "FAIL"
