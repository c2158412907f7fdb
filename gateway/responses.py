"""Every answer is JSON: the two response builders the pipeline and the handlers share, and the
one check of a request's declared charset the management API and the dashboard share."""

from __future__ import annotations

import codecs

from aiohttp import web

from gateway import jsonutil
from gateway.errors import Rejection


def json_response(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=jsonutil.dumps(body), status=status, headers=headers, content_type="application/json")


def error_response(rej: Rejection) -> web.Response:
    """``{"success": false, "error": {"code", "message"}}`` with the code's status and headers."""
    return json_response(rej.status, error_document(rej), dict(rej.headers) if rej.headers else None)


def error_document(rej: Rejection) -> dict[str, object]:
    return {"success": False, "error": {"code": rej.code, "message": rej.message}}


def check_charset(request: web.Request) -> None:
    """A body in a charset no codec reads (``charset=bogus``) is the client's error, a 400: found
    when aiohttp decodes it, it would surface as a ``LookupError`` (a 500) in the handler."""
    if request.charset:
        try:
            codecs.lookup(request.charset)
        except LookupError:
            raise Rejection("invalid_body", f"unknown charset {request.charset[:40]!r} in Content-Type") from None
