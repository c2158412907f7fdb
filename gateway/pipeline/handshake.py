"""Stage 5b: answer a provider's endpoint check (a handshake) declaratively, without forwarding.

Runs right after ``verify``: a handshake is signed like any event, and is answered only when its
request verified (or the provider is explicitly unsigned). A shadow-mode request that failed
verification is never answered: Zoom's reply is an HMAC, with our secret, of a value the request
chooses, so answering unverified requests would sign anything for anyone. Such a request goes on
as an ordinary (unverified) event.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import Rejection
from gateway.jsonutil import follow
from gateway.outcomes import Outcome
from gateway.pipeline.context import Reply, RequestContext
from gateway.pipeline.fields import document
from gateway.providers.handshakes import RESPONDERS
from gateway.providers.request import getall
from gateway.providers.spec import Condition, HandshakeSpec

_MISSING: Any = object()


class Handshake:
    name = "handshake"

    async def __call__(self, ctx: RequestContext) -> None:
        provider = ctx.provider
        assert provider is not None
        if not provider.handshakes or (provider.signature is not None and ctx.secret_index < 0):
            return
        for spec in provider.handshakes:
            if all(_holds(ctx, c) for c in spec.when):
                ctx.reply = _reply(ctx, spec)
                return


def _value(ctx: RequestContext, cond: Condition) -> Any:
    if cond.ref.header:
        values = getall(ctx.request.headers, cond.ref.header)
        return values[0] if len(values) == 1 else _MISSING
    doc = document(ctx)
    if not isinstance(doc, dict | list):
        return _MISSING
    parent = follow(doc, cond.ref.path[:-1])
    last = cond.ref.path[-1]
    if isinstance(parent, dict) and isinstance(last, str) and last in parent:
        return parent[last]
    if isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        return parent[last]
    return _MISSING


def _holds(ctx: RequestContext, cond: Condition) -> bool:
    value = _value(ctx, cond)
    if cond.absent:
        return value is _MISSING
    if value is _MISSING:
        return False
    if isinstance(value, bool) or isinstance(cond.equals, bool):  # JSON true is not 1
        return isinstance(value, bool) and value is cond.equals
    return bool(value == cond.equals)


def _reply(ctx: RequestContext, spec: HandshakeSpec) -> Reply:
    assert ctx.provider is not None
    if spec.responder:
        sig = ctx.provider.signature
        assert sig is not None and 0 <= ctx.secret_index < len(sig.secrets)
        body = RESPONDERS[spec.responder](document(ctx), sig.secrets[ctx.secret_index].reveal())
        return Reply(spec.status, Outcome.HANDSHAKE, body)
    if spec.text is not None:
        text = _fill(ctx, spec.text)
        if not isinstance(text, str):
            raise Rejection("invalid_body", f"the {spec.name} handshake's answer is not text")
        return Reply(
            spec.status, Outcome.HANDSHAKE, {}, raw=text.encode("utf-8", "surrogatepass"), content_type="text/plain"
        )
    if spec.json is None:
        return Reply(spec.status, Outcome.HANDSHAKE, {}, raw=b"")
    body = _fill(ctx, spec.json)
    return Reply(
        spec.status,
        Outcome.HANDSHAKE,
        body if isinstance(body, dict) else {},
        raw=None if isinstance(body, dict) else _dumps(body),
    )


def _fill(ctx: RequestContext, template: Any) -> Any:
    """``"{json:path}"`` and ``"{header:Name}"`` (a whole string) become that value, type kept."""
    if isinstance(template, dict):
        return {k: _fill(ctx, v) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(ctx, v) for v in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}") and ":" in template:
        kind, _, name = template[1:-1].partition(":")
        value: Any = None
        if kind == "header":
            values = getall(ctx.request.headers, name)
            value = values[0] if len(values) == 1 else None
        elif kind == "json":
            value = follow(document(ctx), tuple(int(p) if p.isdigit() else p for p in name.split(".")))
        if kind in ("header", "json"):
            if value is None or isinstance(value, dict | list):
                raise Rejection("invalid_body", f"the handshake needs {template[1:-1]}, which the request lacks")
            return value
    return template


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
