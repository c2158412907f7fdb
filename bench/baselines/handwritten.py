"""Baseline: the Stripe webhook receiver a competent engineer writes in an afternoon.

aiohttp + uvloop, one route. It checks the Stripe v1 signature (``Stripe-Signature: t=..,v1=..``,
HMAC-SHA256 over ``"{t}.{body}"``, constant-time compare, timestamp tolerance) and forwards the
raw body over one keep-alive ``aiohttp.ClientSession`` to the upstream. Nothing else: no IP
allowlist, rate limit, normalization, metrics or logs.

With ``--redis URL`` it also deduplicates: one Redis Lua call per request (``SET key 1 NX EX ttl``
through redis-py's ``register_script``, i.e. EVALSHA), the key deleted again if forwarding fails.

    python bench/baselines/handwritten.py --port 8001 --upstream http://127.0.0.1:8002/ \
        --secret whsec_... [--tolerance 300] [--redis redis://127.0.0.1:6379/0 --key-prefix bench:]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import signal
import time

import aiohttp
import uvloop
from aiohttp import web

DEDUP_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


def stripe_signature_ok(header: str, body: bytes, secret: bytes, tolerance: float) -> bool:
    timestamp = ""
    signatures = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if not timestamp or not signatures:
        return False
    try:
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
    except ValueError:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, sig) for sig in signatures)


def build(args: argparse.Namespace) -> web.Application:
    secret = args.secret.encode()
    app = web.Application(client_max_size=1024 * 1024)
    state: dict[str, object] = {}

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
        state["session"] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10))
        if args.redis:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(args.redis)
            state["redis"] = client
            state["dedup"] = client.register_script(DEDUP_LUA)
        yield
        await state["session"].close()  # type: ignore[attr-defined]
        if args.redis:
            await state["redis"].aclose()  # type: ignore[attr-defined]

    app.cleanup_ctx.append(lifecycle)

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        if not stripe_signature_ok(request.headers.get("Stripe-Signature", ""), body, secret, args.tolerance):
            return web.json_response({"error": "invalid signature"}, status=401)
        key = ""
        if args.redis:
            try:
                event_id = json.loads(body)["id"]
            except (ValueError, KeyError, TypeError):
                return web.json_response({"error": "bad event"}, status=400)
            key = args.key_prefix + str(event_id)
            if not await state["dedup"](keys=[key], args=[1, args.ttl]):  # type: ignore[operator]
                return web.json_response({"status": "duplicate"})
        try:
            async with state["session"].post(  # type: ignore[attr-defined]
                args.upstream, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if not ok:
            if key:
                await state["redis"].delete(key)  # type: ignore[attr-defined]
            return web.json_response({"error": "upstream failed"}, status=502)
        return web.json_response({"status": "forwarded"})

    app.router.add_post("/payments/api/webhooks/stripe/", webhook)
    return app


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(build(args), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description="hand-written Stripe webhook receiver (bench baseline)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--tolerance", type=float, default=300)
    p.add_argument("--redis", help="redis:// URL: dedup with one Lua call per request")
    p.add_argument("--key-prefix", default="bench:dedup:")
    p.add_argument("--ttl", type=int, default=3600)
    uvloop.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
