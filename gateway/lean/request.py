"""One webhook request as the lean path reads it: a strictly parsed head and a body buffer.

The parser accepts only the plain shape a webhook sender uses (``POST`` to a configured
provider's URL over HTTP/1.1, ASCII header fields, one ``Content-Length``, no ``Expect``,
``Transfer-Encoding``, ``Connection`` or ``Upgrade``). Anything else returns None and the
connection goes to aiohttp, whose parser gives every unusual or bad request the answer it has
always had; so this parser never needs to say "400" itself.
"""

from __future__ import annotations

import asyncio
import functools
import re
from types import MappingProxyType
from typing import Final

from aiohttp.helpers import parse_content_type
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.routes import API

#: The whole head (request line and fields) must fit in aiohttp's per-line limit (8190), so no
#: line or field the lean path takes could have been refused by aiohttp for its size.
MAX_HEAD: Final = 8190
MAX_FIELDS: Final = 64  # aiohttp allows 128
_LINE = re.compile(
    rb"POST (" + re.escape(API.encode()) + rb"/([a-z0-9][a-z0-9_-]{0,62})/?(?:\?[A-Za-z0-9._~=&-]*)?) HTTP/1\.1\r\n"
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_LENGTH = re.compile(r"0|[1-9][0-9]{0,9}")


def _is_token(name: str) -> bool:
    """An RFC 9110 token (``name`` is ASCII): letters, digits and ``-`` checked without the
    regex engine, whose per-call cost is most of a short match."""
    return name.replace("-", "").isalnum() or _TOKEN.fullmatch(name) is not None


#: Fields the lean path leaves to aiohttp (any case).
_REFUSED = frozenset({"transfer-encoding", "connection", "expect", "upgrade"})


class Head:
    """The parsed head: provider name from the path, raw path and query, headers, declared length."""

    __slots__ = ("headers", "length", "provider", "raw_path_qs")

    def __init__(self, provider: str, raw_path_qs: str, headers: CIMultiDictProxy[str], length: int) -> None:
        self.provider = provider
        self.raw_path_qs = raw_path_qs
        self.headers = headers
        self.length = length


def parse_head(buf: bytes, end: int) -> Head | None:
    """The head in ``buf[:end]`` (``end`` is where its blank line starts), or None when the lean
    path does not take this request (aiohttp will)."""
    line = _LINE.match(buf, 0, end + 2)
    if line is None:
        return None
    start = line.end()
    try:
        text = buf[start:end].decode("ascii")  # no obs-text
    except UnicodeDecodeError:
        return None
    raw = text.split("\r\n") if end > start else []
    if len(raw) > MAX_FIELDS:
        return None
    pairs = []
    for item in raw:
        # token ":" OWS value OWS, the value visible ASCII with inner spaces and tabs: no control
        # bytes (a lone CR or LF, NUL, DEL), no obs-fold (a line that starts with a space).
        name, sep, value = item.partition(":")
        if not sep or not _is_token(name) or name.lower() in _REFUSED:
            return None
        value = value.strip(" \t")
        if not value.isprintable() and not value.replace("\t", " ").isprintable():
            return None
        pairs.append((name, value))
    fields = CIMultiDict(pairs)
    lengths = fields.getall("Content-Length", ())
    if len(lengths) != 1 or _LENGTH.fullmatch(lengths[0]) is None:
        return None
    return Head(line[2].decode("ascii"), line[1].decode("ascii"), CIMultiDictProxy(fields), int(lengths[0]))


class Body:
    """The body as it arrives; the ``aiohttp.StreamReader`` calls the body stage makes."""

    __slots__ = ("_buf", "_eof", "_waiter", "declared")

    def __init__(self, data: bytes, declared: int) -> None:
        self._buf = data
        self.declared = declared
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def total_bytes(self) -> int:
        return len(self._buf)

    @property
    def complete(self) -> bool:
        return len(self._buf) >= self.declared

    def feed(self, data: bytes) -> bytes:
        """Take what belongs to this body; returns the rest (the next pipelined request's bytes)."""
        need = self.declared - len(self._buf)
        self._buf += data[:need]
        self._wake()
        return data[need:]

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self._eof:
                raise asyncio.IncompleteReadError(self._buf, n)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buf[:n]

    async def readany(self) -> bytes:
        data = await self.readexactly(self.declared)
        self._buf = b""
        return data


class RelURL:
    """What the verifier reads of ``request.rel_url``."""

    __slots__ = ("raw_path_qs",)

    def __init__(self, raw_path_qs: str) -> None:
        self.raw_path_qs = raw_path_qs


@functools.lru_cache(maxsize=1024)  # only configured providers' names get this far (LeanProtocol._next)
def _match_info(provider: str) -> MappingProxyType[str, str]:
    return MappingProxyType({"provider": provider})


class LeanRequest:
    """What the pipeline reads of an ``aiohttp.web.Request``, for a request the lean path parsed."""

    __slots__ = ("_content_type", "content", "headers", "match_info", "rel_url", "remote")
    method: Final = "POST"

    def __init__(self, head: Head, body: Body, remote: str | None) -> None:
        self.match_info = _match_info(head.provider)
        self.headers = head.headers
        self.content = body
        self.rel_url = RelURL(head.raw_path_qs)
        self.remote = remote
        self._content_type: str | None = None

    @property
    def content_length(self) -> int:
        return self.content.declared

    @property
    def content_type(self) -> str:
        """As aiohttp reads it: the media type in lower case, ``application/octet-stream`` if absent."""
        if self._content_type is None:
            raw = self.headers.get("Content-Type")
            self._content_type = "application/octet-stream" if raw is None else parse_content_type(raw)[0]
        return self._content_type
