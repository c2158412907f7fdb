"""Reading values out of a request: the parsed body (JSON or form) and header/path refs."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from gateway import jsonutil
from gateway.errors import Rejection
from gateway.jsonutil import follow
from gateway.pipeline.context import UNPARSED, RequestContext
from gateway.providers.spec import FieldRef


def document(ctx: RequestContext) -> Any:
    """The body parsed once: JSON for ``body: json``, a form for ``form``, best effort for ``any``."""
    if ctx.document is UNPARSED:
        ctx.document = _parse(ctx)
    return ctx.document


def _parse(ctx: RequestContext) -> Any:
    assert ctx.provider is not None
    kind = ctx.provider.body
    if kind == "form" or (kind == "any" and ctx.request.content_type == "application/x-www-form-urlencoded"):
        return _form(ctx.body)
    if kind == "any" and ctx.body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        # Strict: UTF-8 only, no NaN/Infinity, no lone surrogates. The body is spliced into the
        # upstream's event as is, so anything but strict JSON would make the upstream choke on it.
        return jsonutil.loads(ctx.body)
    except jsonutil.JSONDecodeError:
        raise Rejection("invalid_json", "the body is not valid JSON in UTF-8") from None


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise Rejection("invalid_body", "the body is not a valid UTF-8 form") from None
    return dict(pairs)


def lookup(ctx: RequestContext, refs: tuple[FieldRef, ...]) -> Any:
    """The first ref that yields a value (header, or path into the parsed body), else None."""
    for ref in refs:
        if ref.header:
            value: Any = ctx.request.headers.get(ref.header)
        else:
            value = follow(document(ctx), ref.path)
        if value is not None and value != "":
            return value
    return None
