""""Send test webhook": the provider's sample, signed with its configured secret, posted to the
gateway's own listener over loopback, so it takes the real pipeline (checks, dedup, upstream)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from dashboard.state import DASHBOARD, SESSION, session_of
from dashboard.templating import render
from gateway import routes
from gateway.errors import Rejection
from gateway.events.attempts import Attempt
from gateway.events.base import EventFilter, EventStore
from gateway.providers.signer import sample_event, sign, sign_body
from gateway.routes import loopback_base

TIMEOUT = aiohttp.ClientTimeout(total=30)


def webhook_base(request: web.Request) -> str:
    """The webhook listener on loopback: this very socket when the dashboard shares its port,
    else the configured listen address."""
    dash = request.app[DASHBOARD]
    if dash.webhook_base:
        return dash.webhook_base
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    host, port = (sockname[0], sockname[1]) if sockname else (dash.services.settings.host, dash.services.settings.port)
    return loopback_base(host, port)


async def send_test(request: web.Request) -> web.StreamResponse:
    services = request.app[DASHBOARD].services
    name = request.match_info["provider"]
    provider = services.settings.providers.get(name)
    if provider is None:
        raise Rejection("not_found", f"no provider named {name!r}")
    body, extra = sample_event(provider)
    try:
        body = sign_body(provider, body)
        headers = sign(provider, body, services.settings.webhook_url(name), headers=extra)
    except (ValueError, IndexError) as exc:  # a public-key scheme, or no secret configured
        return _shown(request, name, {"ok": False, "message": f"cannot sign for {name}: {exc or 'no secret'}"})
    url = webhook_base(request) + routes.webhook_path(name)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as client, client.post(url, data=body, headers=headers) as r:
            status, text = r.status, await r.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _shown(request, name, {"ok": False, "message": f"the gateway did not answer on {url}: {exc}"})
    answer = _json(text)
    outcome = answer.get("status") or (answer.get("error") or {}).get("code") or "?"
    request.app[DASHBOARD].audit.record(session_of(request).who, "send_test", provider=name, status=status)
    found = await services.events.list(EventFilter(provider=name, event_id=answer.get("event_id"), limit=1))
    record = found[0].id if found and answer.get("event_id") else None
    result = {"ok": 200 <= status < 300, "status": status, "outcome": outcome, "answer": answer, "record": record,
              "upstream": await _last_attempt(services.events, record)}  # fmt: skip
    return _shown(request, name, result)


async def _last_attempt(events: EventStore, record: int | None) -> Attempt | None:
    """The upstream's answer to the test event: its newest delivery attempt (None when it was not
    tried yet, as in queue mode before a worker took it)."""
    stored = await events.get(record) if record is not None else None
    return stored.delivery_attempts[-1] if stored is not None and stored.delivery_attempts else None


def _json(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        return {"text": text[:500]}
    return doc if isinstance(doc, dict) else {"value": doc}


def _shown(request: web.Request, name: str, result: dict[str, Any]) -> web.StreamResponse:
    context = {"session": request[SESSION], "provider": name, "result": result}
    return render("partials/test_result.html", request, context)
