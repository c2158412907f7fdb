"""Every answer is JSON: the two response builders the pipeline and the handlers share."""

from __future__ import annotations

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
