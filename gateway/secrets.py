"""A value that never shows itself: not in ``repr``, ``str``, logs, metrics or API responses."""

from __future__ import annotations

import hmac
import re


class Secret:
    """Key material. Use :meth:`reveal` at the one place that needs the bytes."""

    __slots__ = ("_value", "label")

    def __init__(self, value: bytes, label: str = "") -> None:
        self._value = value
        #: where it came from (``literal``, ``env:NAME``, ``file:/path``): safe to show.
        self.label = label

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.label or '***'}, ***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(Secret)  # equal secrets must hash alike; nothing about the value leaks


def same_text(given: str, expected: str) -> bool:
    """Constant-time equality of two strings. ``hmac.compare_digest`` refuses a ``str`` holding
    non-ASCII (a TypeError, so a 500 on hostile input): compare their UTF-8 bytes instead
    (surrogateescape: aiohttp hands undecodable header bytes back as lone surrogates)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


_SECRET_PARAM = re.compile(r"((?:pass(?:word)?|pwd|token|secret|key)[^=&]*=)[^&]*", re.IGNORECASE)


def _masked(creds: str) -> str:
    """``user:***``, or ``***`` alone when there is no password (the name is then often a token)."""
    user, colon, _ = creds.partition(":")
    return f"{user}:***" if user and colon and "/" not in user else "***"


def mask_url(url: str) -> str:
    """A connection URL safe to show: ``redis://user:pw@host/0?password=x`` ->
    ``redis://user:***@host/0?password=***`` (userinfo and secret-looking query values). A
    userinfo without a password (``https://ghp_token@host``) is often a token: masked whole."""
    scheme, sep, rest = url.partition("://")
    first = rest.split("/", 1)[0]
    if sep and "@" in first:  # the usual userinfo (a password may hold "?" or "#" too)
        creds, _, host = first.rpartition("@")
        rest = f"{_masked(creds)}@{host}{rest[len(first):]}"
    elif sep and ":" in first:
        # "user:pa/ss@host": a password holding "/" (base64 does) runs past the first "/"; the
        # userinfo then ends at the last "@" before any query. ("host:8080/path/a@b" reads the
        # same way and is shown masked too: the text cannot tell a port from a password.)
        end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
        if "@" in rest[:end]:
            creds, _, after = rest[:end].rpartition("@")
            rest = f"{_masked(creds)}@{after}{rest[end:]}"
    return _SECRET_PARAM.sub(r"\1***", f"{scheme}{sep}{rest}")
