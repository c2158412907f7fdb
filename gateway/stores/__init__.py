"""Stores chosen by URL scheme; drivers are imported only when their scheme is used."""

from __future__ import annotations

from gateway.stores.base import Claim, Store, StoreError

SCHEMES = ("memory://",)


def store_from_url(url: str, max_entries: int = 1_000_000) -> Store:
    if url.startswith("memory://"):
        from gateway.stores.memory import MemoryStore

        return MemoryStore(url, max_entries)
    raise ValueError(f"unsupported store URL scheme in {url.split('://')[0]!r}; supported: {', '.join(SCHEMES)}")


__all__ = ["Claim", "Store", "StoreError", "store_from_url"]
