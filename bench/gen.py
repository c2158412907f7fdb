"""Pre-generate a pool of distinct, correctly signed Stripe webhooks for the load generator.

Each line of the output is one request::

    #2xx<TAB>Header-Name: value<TAB>Header-Name: value<TAB><TAB><body>

that is, TAB-separated fields: a marker of the answer the gateway should give (``#2xx`` for a
good signature, ``#4xx`` for a bad one; not sent), ``Name: value`` headers, an empty field, then
the body (compact JSON, which never holds a TAB or a newline). ``bench/wrk/webhooks.lua`` reads
this format.

Every event has its own id (``evt_<run tag><counter>``), so dedup never short-circuits as long as
the load generator does not wrap around the pool. The signature is made by the gateway's own
signer (``gateway.providers.signer.sign``) with the secret of the bench config given, at the time
of generation; the bench config sets a long timestamp tolerance so the pool stays valid for the
whole run.

``--bad-ratio 0.9`` makes the rejection-heavy variant: line ``i`` is well signed iff
``i % 10 == 0`` (for 0.9), so any window of 10 consecutive requests holds exactly one good one;
the others carry a well-formed ``t=..,v1=..`` header whose ``v1`` is a random (wrong) HMAC.

    .venv/bin/python bench/gen.py --config bench.yaml --count 20000 --out pool.txt [--bad-ratio 0.9]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.providers.signer import sign
from gateway.settings.loader import load_config

ALNUM = string.ascii_letters + string.digits
CURRENCIES = ("usd", "eur", "gbp", "usd", "usd", "cad", "aud", "jpy")
PRODUCTS = ("Pro plan (annual)", "Team plan (monthly)", "Starter kit", "Gift card", "Order")


@dataclass
class PoolInfo:
    path: str
    count: int
    good: int
    bad: int
    bad_every: int  # 0: all good; k: line i is good iff i % k == 0
    provider: str
    generated_at: float
    tag: str
    mean_body_bytes: float
    seconds: float


def _rand(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(ALNUM, k=n))


def payment_intent_succeeded(rng: random.Random, event_id: str, created: int) -> dict[str, object]:
    """A payment_intent.succeeded event shaped like Stripe's (API 2024-06-20), ~1.5 KB compact."""
    pi = "pi_3" + _rand(rng, 23)
    amount = rng.randrange(199, 250_000)
    currency = rng.choice(CURRENCIES)
    order = rng.randrange(10_000, 99_999_999)
    customer = "cus_" + _rand(rng, 14)
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "amount": amount,
                "amount_capturable": 0,
                "amount_details": {"tip": {}},
                "amount_received": amount,
                "application": None,
                "application_fee_amount": None,
                "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
                "canceled_at": None,
                "cancellation_reason": None,
                "capture_method": "automatic_async",
                "client_secret": f"{pi}_secret_{_rand(rng, 25)}",
                "confirmation_method": "automatic",
                "created": created - rng.randrange(1, 30),
                "currency": currency,
                "customer": customer,
                "description": f"{rng.choice(PRODUCTS)} #{order}",
                "invoice": None,
                "last_payment_error": None,
                "latest_charge": "ch_3" + _rand(rng, 23),
                "livemode": False,
                "metadata": {"order_id": str(order), "customer_email": f"buyer{order}@example.com"},
                "next_action": None,
                "on_behalf_of": None,
                "payment_method": "pm_1" + _rand(rng, 23),
                "payment_method_configuration_details": {"id": "pmc_1" + _rand(rng, 23), "parent": None},
                "payment_method_options": {
                    "card": {
                        "installments": None,
                        "mandate_options": None,
                        "network": None,
                        "request_three_d_secure": "automatic",
                    },
                    "link": {"persistent_token": None},
                },
                "payment_method_types": ["card", "link"],
                "processing": None,
                "receipt_email": f"buyer{order}@example.com",
                "review": None,
                "setup_future_usage": None,
                "shipping": None,
                "source": None,
                "statement_descriptor": None,
                "statement_descriptor_suffix": None,
                "status": "succeeded",
                "transfer_data": None,
                "transfer_group": None,
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {
            "id": "req_" + _rand(rng, 14),
            "idempotency_key": _rand(rng, 8) + "-" + _rand(rng, 4) + "-" + _rand(rng, 12),
        },
        "type": "payment_intent.succeeded",
    }


def generate(
    config: str,
    count: int,
    out: str | Path,
    bad_ratio: float = 0.0,
    provider_name: str = "stripe",
    seed: int | None = None,
    now: float | None = None,
) -> PoolInfo:
    """Write ``count`` signed requests to ``out`` and a ``<out>.meta.json`` beside it."""
    started = time.perf_counter()
    settings = load_config(config)
    provider = settings.providers[provider_name]
    if provider.signature is None:
        raise SystemExit(f"gen.py: provider {provider_name} signs nothing")
    header = provider.signature.header
    url = settings.webhook_url(provider_name)
    rng = random.Random(seed if seed is not None else os.urandom(8))
    tag = _rand(rng, 10)
    bad_every = 0
    if bad_ratio > 0:
        good_share = 1.0 - bad_ratio
        if good_share <= 0:
            raise SystemExit("gen.py: --bad-ratio must be < 1")
        bad_every = round(1 / good_share)
    ts = int(now if now is not None else time.time())
    good = bad = 0
    total_body = 0
    out = Path(out)
    with out.open("w", encoding="utf-8", newline="\n") as f:
        for i in range(count):
            event_id = f"evt_{tag}{i:09d}"
            body = json.dumps(payment_intent_succeeded(rng, event_id, ts), separators=(",", ":")).encode()
            headers = sign(provider, body, url, now=ts)
            marker = "#2xx"
            if bad_every and i % bad_every != 0:
                # A well-formed header whose v1 is not the HMAC of this body under any secret.
                headers[header] = f"t={ts},v1={rng.getrandbits(256):064x}"
                marker = "#4xx"
                bad += 1
            else:
                good += 1
            fields = [marker] + [f"{k}: {v}" for k, v in headers.items()]
            text = body.decode()
            if "\t" in text or "\n" in text or any("\t" in x or "\n" in x for x in fields):
                raise SystemExit("gen.py: a header or body holds a TAB or newline")
            f.write("\t".join([*fields, "", text]))
            f.write("\n")
            total_body += len(body)
    info = PoolInfo(
        path=str(out),
        count=count,
        good=good,
        bad=bad,
        bad_every=bad_every,
        provider=provider_name,
        generated_at=ts,
        tag=tag,
        mean_body_bytes=round(total_body / max(count, 1), 1),
        seconds=round(time.perf_counter() - started, 3),
    )
    Path(str(out) + ".meta.json").write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="gateway YAML whose provider secret signs the pool")
    p.add_argument("--count", type=int, default=20_000)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--bad-ratio", type=float, default=0.0, help="share of requests with a wrong signature (0.9: rejection-heavy)"
    )
    p.add_argument("--provider", default="stripe")
    p.add_argument("--seed", type=int)
    args = p.parse_args(argv)
    info = generate(args.config, args.count, args.out, args.bad_ratio, args.provider, args.seed)
    print(json.dumps(asdict(info)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
