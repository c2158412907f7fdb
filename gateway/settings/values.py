"""Readers for the settings whose value is not a plain string, number or boolean.

Each has the ``Parse`` shape of ``gateway.declare.fields``: ``(section, key, default) -> value``,
and fails through the section's reader, so its errors name file, key and value like the rest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.addresses import Network

# The modules, not their names: gateway.events imports gateway.settings.model (which imports this)
# while gateway.providers.parse is still loading; their functions are looked up when called.
from gateway.providers import parse, readers
from gateway.providers.spec import RateLimit
from gateway.reader import Reader
from gateway.secrets import Secret

#: ``$NAME``, ``${NAME`` (never closed: a closed one was replaced already) and ``env:NAME``.
_BROKEN_REFS = (
    (re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$"), "a shell-style reference"),
    (re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?$"), "an unclosed reference"),
    (re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$"), "an env: reference"),
)  # fmt: skip


def headers(r: Reader, key: str, default: Any) -> dict[str, str] | None:
    """``upstream.headers``: names to strings or integers, no line breaks."""
    sub = r.sub(key)
    if sub.value is None:
        return default  # type: ignore[no-any-return]
    for name, value in sub.mapping().items():
        if not isinstance(value, str | int) or isinstance(value, bool):  # `X: ` in YAML is None, not ""
            sub.fail("must be a string (the value is not shown: it may be a credential)", key=name)
        if any(c in f"{name}{value}" for c in "\r\n\0"):  # aiohttp would refuse it on every request
            sub.fail("header names and values may not hold line breaks", key=name)
    return {str(k): str(v) for k, v in sub.mapping().items()}


def rate_limit(r: Reader, key: str, default: Any) -> RateLimit | None:
    """``{rate, burst}``; ``false`` or ``null`` turns the limit off."""
    value = r.value.get(key, default) if isinstance(r.value, dict) else default
    if value is False or value is None:
        return None
    if isinstance(value, RateLimit):
        return value
    return parse.parse_rate(Reader(r.file, value, f"{r.path}.{key}" if r.path else key))


def networks(r: Reader, key: str, default: Any) -> tuple[Network, ...]:
    return readers.parse_networks(r.sub(key))


def duration(r: Reader, key: str, default: Any) -> float:
    return readers.duration(r, key, default)


#: A header name's characters, plus the shell pattern's ``*`` and ``?``.
_HEADER_PATTERN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~?-]+")


def header_patterns(r: Reader, key: str, default: Any) -> tuple[str, ...]:
    """``events.redact_headers``: header names or shell patterns of them, kept lower-case."""
    patterns: tuple[str, ...] = r.strings(key, default)
    for pattern in patterns:
        if not _HEADER_PATTERN.fullmatch(pattern):
            r.fail("must be header names or shell patterns of them (letters, digits, -, *, ?)", pattern, key)
    return tuple(p.lower() for p in patterns)


def raw_text(r: Reader, key: str, default: Any) -> str:
    """A string that may be empty (``state.key_prefix: ""`` shares the keyspace on purpose)."""
    value = r.value.get(key, default) if isinstance(r.value, dict) else default
    if not isinstance(value, str):
        r.fail("must be a string", value, key)
    return value


def secret_list(r: Reader, key: str, default: Any) -> tuple[Secret, ...]:
    return secrets(r.sub(key))


def secrets(r: Reader) -> tuple[Secret, ...]:
    # SECURITY: `secrets: whsec_...` (a string, not a list) is a likely slip; the error must not
    # echo the value, as Reader.elements would.
    if r.value is not None and not isinstance(r.value, list):
        r.fail("must be a list (the value is not shown: it may be a secret)")
    return tuple(secret(item) for item in r.elements())


def secret(r: Reader) -> Secret:
    """A literal, ``${ENV}`` (already interpolated) or ``file:/path`` (a Kubernetes Secret mount)."""
    value = r.value
    if not isinstance(value, str) or not value.strip():  # blanks alone: a key anyone can guess
        r.fail("must be a non-empty string (a literal, ${ENV_VAR} or file:/path)")
    if value.startswith("file:"):
        return _secret_file(r, value[len("file:") :])
    if not isinstance(value, FromEnv):  # a value read from the environment is the secret as given
        _refuse_broken_reference(r, value)
    return Secret(value.encode(), f"#{r.path.rsplit('[', 1)[-1].rstrip(']')}")


def _secret_file(r: Reader, path: str) -> Secret:
    try:
        content = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        r.fail(f"cannot read secret file: {exc.strerror}", path)
    if not content.strip():
        r.fail("secret file is empty (or blank)", path)
    return Secret(content, f"file:{path}")


class FromEnv(str):
    """A string of the file whose every ``${...}`` was filled from the environment, none from a
    ``:-default`` (``loader._interpolate``): it is never taken for a mistyped reference, whatever
    it starts with (a secret may well begin with ``$`` or ``env:``)."""

    __slots__ = ()


def _refuse_broken_reference(r: Reader, value: str) -> None:
    """SECURITY: ``$STRIPE_SECRET`` used as a literal secret lets anyone who guesses the text sign
    webhooks. Only the variable's name is shown (it is in the file anyway), never a value."""
    for pattern, what in _BROKEN_REFS:
        match = pattern.match(value)
        if match:
            name = match.group(1)
            r.fail(
                f"looks like {what} to the environment variable {name}, which would be used as the "
                f'literal secret; write "${{{name}}}" (quoted) to read the variable'
            )


def origin(r: Reader, key: str, default: Any) -> str:
    """``passthrough.url``: ``http(s)://host[:port]`` without a path ("" = the upstream's origin)."""
    value = r.value.get(key, default) if isinstance(r.value, dict) else default
    if value == default:
        return str(default)
    split = urlsplit(value) if isinstance(value, str) else None
    if split is None or split.scheme not in ("http", "https") or not split.netloc or split.path.strip("/"):
        r.fail("must be an origin: http(s)://host:port, without a path", value, key)
    if split.query or split.fragment:
        r.fail("must be an origin: http(s)://host:port, without a path", value, key)
    return str(value).rstrip("/")
