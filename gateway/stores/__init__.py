"""Dedup and rate-limit stores, chosen by URL scheme: ``store_from_url(url, options)``.

Each backend module registers its schemes in ``STORES``; importing it here is what makes the
scheme known (``memory://``, ``redis://``, ``rediss://``, ``redis+cluster://``,
``rediss+cluster://``). Drivers load only when a store opens.
"""

from __future__ import annotations

from gateway.errors import StoreError
from gateway.stores import memory, redis, redis_cluster
from gateway.stores.base import STORES, Claim, Store, StoreOptions

__all__ = [
    "STORES",
    "Claim",
    "Store",
    "StoreError",
    "StoreOptions",
    "memory",
    "redis",
    "redis_cluster",
    "store_from_url",
]


def store_from_url(url: str, options: StoreOptions | None = None) -> Store:
    """The store for ``url``; ``ValueError`` for an unknown scheme (the loader refuses it first)."""
    return STORES.backend(url).open(url, options or StoreOptions())
