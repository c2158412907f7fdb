"""The demo upstream: prints each event it receives and answers 204. For `make run` and trying out."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from aiohttp import web


def demo_upstream_app(out: TextIO | None = None, quiet: bool = False) -> web.Application:
    """``quiet``: answer 204 and print nothing (``dev`` prints each event itself)."""
    stream = out or sys.stdout

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        if quiet:
            return web.Response(status=204)
        try:
            event = json.loads(raw)
            data = event.get("data", {})
            payment = data.get("payment")
            line = f"[demo upstream] {event.get('type')} id={event.get('id')}"
            if payment:
                fields = (payment.get(k) for k in ("status", "amount", "currency"))
                line += f" payment={payment.get('id')} " + " ".join(str(f) for f in fields)
        except (ValueError, AttributeError):
            line = f"[demo upstream] {len(raw)} bytes (not a CloudEvent)"
        print(line, file=stream, flush=True)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app
