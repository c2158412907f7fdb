"""Backends chosen by URL scheme, each registering its own schemes once where it is defined.

As alisaifee/limits' ``storage_from_string``: a backend module decorates its class with
``@STORES.register("redis", "rediss")``; the package imports its backend modules, and the class's
``open`` receives the URL and plain options (never a settings object). The config loader and the
error message list the same registered schemes, and read a backend's traits (``durable``) from
its class, so a new backend is a new module and one import line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B", bound=type)


class Backends(Generic[B]):
    """URL scheme -> backend class, in registration order (the order error messages list them)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._classes: dict[str, B] = {}

    def register(self, *schemes: str) -> Callable[[B], B]:
        def add(backend: B) -> B:
            for scheme in schemes:
                if scheme in self._classes:
                    raise RuntimeError(f"{self.what} scheme {scheme}:// is registered twice")
                self._classes[scheme] = backend
            return backend

        return add

    @property
    def schemes(self) -> tuple[str, ...]:
        """``("memory://", "redis://", ...)``: what a URL may start with."""
        return tuple(f"{scheme}://" for scheme in self._classes)

    def supports(self, url: str) -> bool:
        return _scheme(url) in self._classes

    def backend(self, url: str) -> B:
        """The class for ``url``'s scheme; an unknown scheme lists the supported ones."""
        found = self._classes.get(_scheme(url))
        if found is None:
            supported = ", ".join(self.schemes)
            raise ValueError(f"unsupported {self.what} URL scheme {url.split('://')[0]!r}; supported: {supported}")
        return found


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme if sep else ""
