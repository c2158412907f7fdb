"""JSON logs: one object per line. The webhook line never holds a secret or a body."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from aiohttp.http_exceptions import HttpProcessingError

RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines at ``level`` and above to ``stream`` (stdout; ``dev`` keeps stdout for its own lines)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    guard_parser_errors()


class ParserErrors(logging.Filter):
    """Rewrites aiohttp's log line for a request its HTTP parser refused (400, 413, 431...).

    SECURITY: aiohttp logs such a refusal at ERROR with a traceback whose message quotes the raw
    header line (``b'X-API-Key: <key>\\x01'``, or the first bytes of an 8 KiB ``Authorization``),
    so a client that appends one control byte to a real credential would put it in the log. The
    line becomes one structured WARNING with the peer, the status, the error class and the
    parser's reason up to its first quote or colon: never a header name or value.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.client_ip = peer if isinstance(peer, str) else None
            record.msg, record.args = "request refused by the HTTP parser", ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            if record.levelno > logging.WARNING:  # a client's error, not the gateway's; debug stays debug
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.status = exc.code
            record.error = type(exc).__name__
            record.reason = _REASON.sub("", re.split(r"[:'\"]", str(exc.message), maxsplit=1)[0]).strip()[:80]
        return True


_REASON = re.compile(r"[^A-Za-z0-9 ]")
PARSER_ERRORS = ParserErrors()


def guard_parser_errors() -> None:
    """Install :class:`ParserErrors` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if PARSER_ERRORS not in logger.filters:
        logger.addFilter(PARSER_ERRORS)
