"""Stores chosen by URL scheme; drivers are imported only when their scheme is used."""

from __future__ import annotations

from gateway.settings.model import StateSettings
from gateway.stores.base import Claim, Store, StoreError

SCHEMES = ("memory://", "redis://", "rediss://")


def store_from_url(state: StateSettings | str, max_entries: int = 1_000_000) -> Store:
    """The store for ``state.url``: ``memory://``, ``redis://`` or ``rediss://`` (TLS)."""
    if isinstance(state, str):
        state = StateSettings(url=state)
    url = state.url
    if url.startswith("memory://"):
        from gateway.stores.memory import MemoryStore

        return MemoryStore(url, max_entries)
    if url.startswith(("redis://", "rediss://")):
        from gateway.stores.redis import RedisStore

        return RedisStore(url, prefix=state.key_prefix, timeout=state.timeout)
    raise ValueError(f"unsupported store URL scheme {url.split('://')[0]!r}; supported: {', '.join(SCHEMES)}")


__all__ = ["Claim", "Store", "StoreError", "store_from_url"]
