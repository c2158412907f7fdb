"""The live tail's reads of the event store: the backlog a new tail starts with, and the tail
itself when this process is one of several (``run --workers N``: each worker's feed holds only
the requests it answered, while the store is shared).

Polling looks at the newest page twice a second; each stored event carries its number as the SSE
id, so a reconnecting browser gets what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.errors import StoreError
from gateway.events.base import EventFilter, EventRecord

POLL = 0.5
BACKLOG = 20
PAGE = 100  # the newest events a poll reads; more since the last poll are said to be missed
HEARTBEAT = 15.0
Frame = Callable[[str, dict[str, Any], "int | None"], bytes]


def stored_row(r: EventRecord) -> dict[str, Any]:
    return {**r.summary(), "outcome": r.status, "path": f"{r.id}/"}


async def backlog(store: Any, frame: Frame) -> bytes:
    """The newest stored events and the last two minutes' rejection counts, as frames."""
    try:
        fresh = await new_events(store, None)
        rejected = await new_rejections(store, {})
    except StoreError:
        return b""
    out = [frame("rejected", row, None) for row in rejected]  # a count is per minute: events on top
    out += [frame("webhook", stored_row(r), None) for r in fresh]
    return b"".join(out)


async def poll_tail(
    response: web.StreamResponse, store: Any, last: int | None, frame: Frame, watching: Callable[[], bool],
    closing: asyncio.Event,
) -> None:  # fmt: skip
    """Stored events as they arrive (their numbers as SSE ids), and rejection counts; without
    ``last``, the first look sends the newest events and the last two minutes' counts."""
    seen: dict[tuple[Any, ...], int] = {}
    quiet = 0.0
    while watching():
        try:
            fresh = await new_events(store, last)
            rejected = await new_rejections(store, seen)
        except StoreError:
            fresh, rejected = [], []
        for row in rejected:
            await response.write(frame("rejected", row, None))
        skipped = fresh[0].id - last - 1 if last is not None and len(fresh) == PAGE else 0
        if skipped > 0:  # a whole page is new, and ids before it too (at most: failed inserts use ids)
            message = f"up to {skipped} more webhook(s) arrived than the tail shows: the event log has them"
            await response.write(frame("missed", {"count": None, "message": message}, None))
        for record in fresh:
            await response.write(frame("webhook", stored_row(record), record.id))
            last = record.id
        quiet = 0.0 if fresh or rejected else quiet + POLL
        if quiet >= HEARTBEAT:
            await response.write(b": keep-alive\n\n")
            quiet = 0.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), POLL)


async def new_events(store: Any, last: int | None) -> list[EventRecord]:
    page: list[EventRecord] = await store.list(EventFilter(limit=BACKLOG if last is None else PAGE))
    fresh = [r for r in page if last is None or r.id > last]
    return list(reversed(fresh))


async def new_rejections(store: Any, seen: dict[tuple[Any, ...], int]) -> list[dict[str, Any]]:
    """Rejections counted since the last poll (the store folds them per minute); the first poll
    sends the last two minutes' counts, as the event backlog does for events."""
    first = ("started",) not in seen
    seen[("started",)] = 0
    out = []
    recent = datetime.now(UTC) - timedelta(minutes=2)
    for r in await store.rejections(EventFilter(limit=100)):
        key: tuple[Any, ...] = (r.minute, r.provider, r.source, r.code)
        grown = r.count - seen.get(key, 0)
        seen[key] = r.count
        if grown > 0 and (not first or r.minute >= recent):
            out.append({"minute": r.minute, "provider": r.provider, "source": r.source, "code": r.code, "count": grown})
    if len(seen) > 1000:
        for key in sorted((k for k in seen if len(k) == 4), key=lambda k: k[0])[:-500]:
            del seen[key]
    return out
