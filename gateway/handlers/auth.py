"""API-key check for the management API: ``X-API-Key: K`` or ``Authorization: Bearer K``."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from gateway.app_state import SERVICES
from gateway.errors import Rejection, StoreError
from gateway.responses import check_charset, error_response

#: RFC 9110: a 401 names the scheme the client should use.
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="webhook-gateway management API"'}


def require_api_key(request: web.Request) -> None:
    keys = request.app[SERVICES].settings.api_keys
    if not keys:
        raise Rejection("unauthorized", "the management API is disabled: configure management.api_keys", CHALLENGE)
    given = request.headers.get("X-API-Key", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given:
        raise Rejection("unauthorized", "send an API key in X-API-Key or Authorization: Bearer", CHALLENGE)
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: this gives the bytes back, so a
    # non-UTF-8 header is one more wrong key (a 401), not an encoding error (a 500).
    candidate = given.encode("utf-8", "surrogateescape")
    # SECURITY: constant-time against every key, no early exit that would reveal which matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.reveal())
    if not matched:
        raise Rejection("unauthorized", "the API key is not valid", CHALLENGE)


def managed(handler: Any) -> Any:
    """API key first; store failures become 503, bad parameters 400. No answer is cached: they
    carry stored events, headers and configuration."""

    async def wrapper(request: web.Request) -> web.Response:
        try:
            require_api_key(request)
            check_charset(request)
            response: web.Response = await handler(request, request.app[SERVICES])
        except Rejection as rej:
            response = error_response(rej)
        except StoreError:
            retry = {"Retry-After": "5"}
            response = error_response(Rejection("store_unavailable", "the event store is unavailable", retry))
        response.headers["Cache-Control"] = "no-store"
        return response

    return wrapper
