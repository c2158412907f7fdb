"""CPU cost of one ``verify()`` call per preset, to compare two checkouts on a busy machine.

    .venv/bin/python bench/verify_cost.py        (from the repository root)

Best of 25 runs of 4,000 calls, measured in process CPU time (``time.process_time``), so other
processes sharing the cores inflate it less than wall time would. Run two checkouts alternately.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd() / "tests"))  # the checkout being measured

from conftest import build, config_dict

from gateway.providers.signer import sign
from gateway.providers.verifier import verify


def main() -> None:
    settings = build(config_dict("http://127.0.0.1:9"))
    doc = {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"amount": 100}}}
    body = json.dumps(doc).encode()
    out = {}
    for name in ("stripe", "github", "standard-webhooks", "nowpayments"):
        provider = settings.providers[name]
        now = time.time()
        headers = sign(provider, body, "http://x/", now=now)
        best = float("inf")
        for _ in range(25):
            start = time.process_time()
            for _ in range(4000):
                verify(provider, headers, body, "http://x/", now)
            best = min(best, (time.process_time() - start) / 4000)
        out[name] = f"{best * 1e6:.2f} µs"
    print(out)


if __name__ == "__main__":
    main()
