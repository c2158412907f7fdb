"""Walks parsed YAML once, with the key path at hand, so every error names file, key and value."""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterator
from typing import Any, NoReturn

from gateway.errors import ConfigError

MISSING: Any = object()


class Reader:
    """A view of one mapping (or value) in a config file at ``path``."""

    __slots__ = ("file", "path", "value")

    def __init__(self, file: str, value: Any, path: str = "") -> None:
        self.file = file
        self.value = value
        self.path = path

    def fail(self, message: str, value: Any = ..., key: str | None = None) -> NoReturn:
        raise ConfigError(self.file, self._join(key) if key else self.path, message, value)

    def _join(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: Collection[str] | None = None) -> dict[str, Any]:
        """The value as a dict; with ``allowed``, an unknown key is an error with a suggestion."""
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            self.fail("must be a mapping", self.value)
        for key in self.value:
            if not isinstance(key, str):
                self.fail("keys must be strings", key)
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}", key=key)
        return self.value

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and self.value.get(key) is not None

    def sub(self, key: str) -> Reader:
        data = self.value.get(key) if isinstance(self.value, dict) else None
        return Reader(self.file, data, self._join(key))

    def items(self) -> Iterator[tuple[str, Reader]]:
        for key in self.mapping():
            yield key, self.sub(key)

    def elements(self) -> Iterator[Reader]:
        if self.value is None:
            return
        if not isinstance(self.value, list):
            self.fail("must be a list", self.value)
        for index, item in enumerate(self.value):
            yield Reader(self.file, item, self._join(index))

    def _get(self, key: str, default: Any) -> Any:
        value = self.value.get(key) if isinstance(self.value, dict) else None
        if value is None:
            if default is MISSING:
                self.fail("is required", key=key)
            return default
        return value

    def text(self, key: str, default: Any = MISSING, choices: Collection[str] = ()) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, str) or not value:
            self.fail("must be a non-empty string", value, key)
        if choices and value not in choices:
            self.fail(f"must be one of {', '.join(sorted(choices))}", value, key)
        return value

    def number(self, key: str, default: Any = MISSING, *, positive: bool = True) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail("must be a number", value, key)
        if not math.isfinite(value):  # YAML has .inf and .nan; NaN would pass every comparison below
            self.fail("must be a finite number", value, key)
        if positive and value <= 0:
            self.fail("must be > 0", value, key)
        if not positive and value < 0:
            self.fail("must be >= 0", value, key)
        return value

    def integer(self, key: str, default: Any = MISSING, *, minimum: int = 1) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail("must be an integer", value, key)
        if value < minimum:
            self.fail(f"must be >= {minimum}", value, key)
        return value

    def boolean(self, key: str, default: Any = MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.fail("must be true or false", value, key)
        return value

    def strings(self, key: str, default: Any = MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail("must be a list of non-empty strings", value, key)
        return tuple(value)
