"""What a signature scheme may read of a request: its headers (one value each), raw body and URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from gateway.errors import Rejection

Headers = CIMultiDictProxy[str] | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of one webhook request a verifier reads; ``url`` is the public URL it was sent to."""

    headers: Headers
    body: bytes
    url: str

    def header(self, name: str) -> str:
        return single_header(self.headers, name)

    def optional_header(self, name: str) -> str | None:
        """The header's value, or None when absent or blank; sent twice is still refused."""
        if not getall(self.headers, name):
            return None
        try:
            return single_header(self.headers, name)
        except Rejection as exc:
            if exc.code == "missing_signature":
                return None
            raise


def getall(headers: Headers, name: str) -> list[str]:
    if isinstance(headers, CIMultiDictProxy):
        return headers.getall(name, [])
    lname = name.lower()
    return [v for k, v in headers.items() if k.lower() == lname]


def single_header(headers: Headers, name: str) -> str:
    """The one value of ``name``: missing or blank is ``missing_signature``, repeated is invalid."""
    values = getall(headers, name)
    if not values:
        raise Rejection("missing_signature", f"the {name} header is missing")
    if len(values) > 1:
        raise Rejection("invalid_signature", f"the {name} header is sent more than once")
    value: str = values[0].strip(" \t")  # HTTP's optional whitespace only: the rest was signed
    if not value:
        raise Rejection("missing_signature", f"the {name} header is empty")
    return value


def wire_bytes(text: str, what: str) -> bytes:
    """The bytes the sender put on the wire: aiohttp decodes header bytes that are not UTF-8 as
    lone surrogates (``surrogateescape``), which turns them back; anything else cannot have been
    signed by anyone and is refused, never a 500."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise Rejection("invalid_signature", f"the {what} is not valid text") from None
