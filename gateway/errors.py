"""The gateway's few errors.

    GatewayError
    ├── ConfigError      a config file is wrong: names file, key path and bad value
    ├── Rejection        a request is refused: a code from the closed set below
    ├── StoreError       a backend (Redis, PostgreSQL) could not answer: each stage applies its policy
    └── UnstorableEvent  the event store refused one event's own data: retrying cannot help
    ProtocolError        (a ConnectionError) a peer broke HTTP/1.1 or RESP framing

Success outcomes (``forwarded``, ``duplicate``...) are names too: :mod:`gateway.outcomes`.

A rejection's ``code`` is also the ``outcome`` label of the request metrics, so the set is closed:
adding a code is a change to ``docs/metrics.md`` and ``api/openapi.yaml`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: code -> HTTP status. Providers retry on 5xx and 429, and on 408/409 for most; they give up on
#: other 4xx, so a 4xx is only used when a retry of the same request cannot succeed.
ERROR_STATUS: Mapping[str, int] = {
    "not_found": 404,
    "unknown_provider": 404,
    "method_not_allowed": 405,
    "unauthorized": 401,
    "invalid_parameter": 400,
    "invalid_request": 400,
    "body_too_large": 413,
    "body_timeout": 408,
    "header_timeout": 408,
    "unsupported_encoding": 415,
    "truncated_body": 400,
    "invalid_json": 400,
    "invalid_body": 400,
    "invalid_forwarded_for": 400,
    "ip_not_allowed": 403,
    "rate_limited": 429,
    "missing_signature": 401,
    "invalid_signature": 401,
    "stale_timestamp": 401,
    "in_flight": 409,
    "store_unavailable": 503,
    "upstream_error": 502,
    "upstream_unavailable": 503,
    "upstream_timeout": 504,
    "shutting_down": 503,
    "too_many_connections": 503,
    "internal_error": 500,
}


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration value is wrong. ``str()`` is one line: ``file: key.path: reason, got value``."""

    def __init__(self, file: str, path: str, message: str, value: Any = ...) -> None:
        self.file = file
        self.path = path
        self.message = message
        self.value = value
        where = f"{file}: {path}" if path else file
        got = "" if value is ... else f", got {_show(value)}"
        super().__init__(f"{where}: {message}{got}")


class Rejection(GatewayError):
    """Refuse the current request with ``code`` (one of ``ERROR_STATUS``) and a human message."""

    __slots__ = ("code", "headers", "message", "status")

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERROR_STATUS[code]
        self.message = message
        self.headers = headers


class StoreError(GatewayError):
    """A backend could not answer (connection lost, timeout). Never raised for a normal outcome.

    Driver errors are wrapped in it at the store boundary; each stage applies its declared policy.
    """


class UnstorableEvent(GatewayError):
    """The store refused this one event's data (e.g. a NUL in its id): retrying cannot help."""


class ProtocolError(ConnectionError):
    """A peer's reply breaks the wire protocol; a ``ConnectionError`` so callers treat it as one."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
