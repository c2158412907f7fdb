"""Text the event store can keep: PostgreSQL's ``text`` and ``jsonb`` refuse NUL and lone surrogates.

aiohttp decodes header bytes as UTF-8 with ``surrogateescape``, so a header a proxy added in
Latin-1 (``X-Geo-City: M\\xfcnchen``) arrives holding lone surrogates; a provider's event id or
type may hold NUL (``\\u0000`` in its JSON). The event was verified and is forwarded as it came;
its stored copy is escaped instead of refused, because refusing it lost the audit row (sync
mode) or answered 400 to a provider that never retries a 4xx (queue mode).

Only text that needs it is changed (so ids, filters and headers as sent stay as they were), and
then backslashes are doubled too, so an escaped value reads unambiguously: NUL becomes ``\\x00``,
a byte that was not UTF-8 ``\\xNN``, any other lone surrogate ``\\udNNN``. The price of leaving
ordinary text alone: an id that holds a NUL and one that holds the four characters ``\\x00`` in
its place are stored alike (and would meet as one key); a provider would have to sign both.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

_LOW_ESCAPES = range(0xDC80, 0xDD00)  # surrogateescape's stand-ins for the bytes 0x80-0xFF


def storable(text: str) -> str:
    """``text`` unchanged if PostgreSQL can store it, else escaped (see the module docstring)."""
    if "\x00" not in text and (text.isascii() or _is_unicode(text)):
        return text
    return "".join(map(_escape, text))


def storable_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names and values escaped where needed (see :func:`storable`)."""
    items = list(headers)
    text = "".join(chain.from_iterable(items))
    if text.isascii() and "\x00" not in text:  # the usual head: nothing to escape, one check
        return dict(items)
    return {storable(name): storable(value) for name, value in items}


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    if code == 0:
        return "\\x00"
    if code in _LOW_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return ch
