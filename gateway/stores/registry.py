"""Backends chosen by URL scheme, each registering its own schemes once where it is defined.

As alisaifee/limits' ``storage_from_string``: a backend module decorates its factory with
``@REGISTRY.register("redis", "rediss")``; the package imports its backend modules, and the
factory receives the URL and plain options (never a settings object). The config loader and the
error message list the same registered schemes, so a new backend is a new module and one import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Backends(Generic[F]):
    """URL scheme -> factory, in registration order (the order error messages list them)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._factories: dict[str, F] = {}

    def register(self, *schemes: str) -> Callable[[F], F]:
        def add(factory: F) -> F:
            for scheme in schemes:
                if scheme in self._factories:
                    raise RuntimeError(f"{self.what} scheme {scheme}:// is registered twice")
                self._factories[scheme] = factory
            return factory

        return add

    @property
    def schemes(self) -> tuple[str, ...]:
        """``("memory://", "redis://", ...)``: what a URL may start with."""
        return tuple(f"{scheme}://" for scheme in self._factories)

    def supports(self, url: str) -> bool:
        return _scheme(url) in self._factories

    def factory(self, url: str) -> F:
        """The factory for ``url``'s scheme; an unknown scheme lists the supported ones."""
        found = self._factories.get(_scheme(url))
        if found is None:
            supported = ", ".join(self.schemes)
            raise ValueError(f"unsupported {self.what} URL scheme {url.split('://')[0]!r}; supported: {supported}")
        return found


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme if sep else ""
