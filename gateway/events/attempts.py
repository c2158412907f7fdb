"""Delivery attempts: one row per try on the wire, for the dashboard's timeline and the API.

Every POST to the upstream is an attempt: sync mode's one call (with its retries on a connection
the upstream closed), and each background attempt of queue mode, the failed ones and the last
one before a dead letter included. The event store keeps them beside their event (PostgreSQL:
``webhook_delivery_attempts``, written in the same statements as the event's own writes; memory:
on the record, counted in its byte bound).

The upstream's answer is ours, but it is still untrusted text: only its first
``SNIPPET_BYTES`` bytes are kept, decoded with replacement characters and escaped where the
database cannot hold them; templates escape it again as HTML.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gateway.escape import storable

SNIPPET_BYTES = 512
#: Attempts the memory store keeps per event (the newest); PostgreSQL shows as many on a page.
KEEP_PER_EVENT = 100


class Attempt(NamedTuple):
    """One try to deliver an event. ``status`` is None when no answer came (timeout, refused).

    A named tuple, not a frozen dataclass: one is made per POST on the request path, and a tuple
    is cheaper to build (no ``object.__setattr__`` per field). It is still tracked by the cyclic
    garbage collector: CPython untracks only exact tuples."""

    at: datetime  # when the request went out
    number: int  # the event's delivery attempt it belongs to (1 in sync mode; queue: claim count)
    result: str  # success | http_4xx | http_5xx | timeout | unreachable | invalid_response | error
    latency_ms: float
    status: int | None = None
    response: str = ""  # the first SNIPPET_BYTES of the upstream's body, decoded safely
    error: str | None = None  # why there was no usable answer (no secret: an error code and class)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(timespec="milliseconds"),
            "attempt": self.number,
            "result": self.result,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "response": self.response,
            "error": self.error,
        }

    def size(self) -> int:
        """Bytes held, roughly (for the memory store's bound)."""
        return len(self.response) + len(self.error or "") + 160


def snippet(body: bytes) -> str:
    """The first ``SNIPPET_BYTES`` of an answer as text the store and a page can hold safely."""
    return storable(body[:SNIPPET_BYTES].decode("utf-8", "replace")) if body else ""


class Tries:
    """The attempts of one delivery as they happen: ``begin`` before each POST, then one of
    ``answered`` or ``failed``; a try still open when the timeout fires is closed by ``timeout``."""

    __slots__ = ("_open", "_wall", "items", "number")

    def __init__(self, number: int = 1) -> None:
        self.number = number
        self.items: list[Attempt] = []
        self._open = 0.0  # perf_counter of the open try, 0 when none
        self._wall = 0.0  # time.time() of the open try: a datetime is made only when it closes

    def begin(self) -> None:
        self._open, self._wall = time.perf_counter(), time.time()

    def _close(self, result: str, status: int | None, response: str, error: str | None) -> None:
        if not self._open:
            return
        ms = round((time.perf_counter() - self._open) * 1000, 3)
        at = datetime.fromtimestamp(self._wall, UTC)
        self.items.append(Attempt(at, self.number, result, ms, status, response, error))
        self._open = 0.0

    def answered(self, status: int, body: bytes) -> None:
        result = "success" if 200 <= status < 300 else f"http_{status // 100}xx"
        self._close(result, status, snippet(body), None)

    def failed(self, result: str, error: str) -> None:
        self._close(result, None, "", storable(error[:500]))

    def timeout(self, error: str) -> None:
        self.failed("timeout", error)
