"""Walks parsed YAML once, with the key path at hand, so every error names file, key and value.

It sits below both ``gateway.settings`` (the gateway's file) and ``gateway.providers`` (provider
entries): both read YAML through it and neither imports the other for it. The accessors are
typed, so strict mypy checks what crosses from untyped YAML into the frozen settings.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterator
from typing import Any, NoReturn, overload

from gateway.errors import ConfigError

MISSING: Any = object()


class ConfigErrors(ConfigError):
    """Several config errors found in one pass (``check`` lists them all); one line each in ``str()``."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.file, first.path, first.message, first.value)
        self.errors = tuple(errors)
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class Errors:
    """Collects the errors of one file, so a reader can go on after a bad key and report every one."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        """Record ``error``, unless its key, or a mapping holding it, has one already: a bad
        ``${VAR}`` is not also a bad URL, and ``upstream: 5`` is not also a missing ``upstream.url``."""
        for one in error.errors if isinstance(error, ConfigErrors) else (error,):
            if not any(_within(one.path, seen.path) for seen in self.found):
                self.found.append(one)

    def at(self, *paths: str) -> bool:
        """Whether an error was recorded at one of ``paths`` (or inside it)."""
        return any(e.path == p or e.path.startswith(f"{p}.") for e in self.found for p in paths)

    def raise_any(self) -> None:
        """Nothing found: return. One: raise it as it is. Several: raise them together."""
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise ConfigErrors(self.found)


def _within(path: str, outer: str) -> bool:
    return path == outer or (outer != "" and path.startswith((f"{outer}.", f"{outer}[")))


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

    @overload
    def text(self, key: str, default: str = ..., choices: Collection[str] = ()) -> str: ...
    @overload
    def text(self, key: str, default: None, choices: Collection[str] = ()) -> str | None: ...
    def text(self, key: str, default: Any = MISSING, choices: Collection[str] = ()) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, str) or not value:
            self.fail("must be a non-empty string", value, key)
        if choices and value not in choices:
            self.fail(f"must be one of {', '.join(sorted(choices))}", value, key)
        return value

    def number(self, key: str, default: float = MISSING, *, positive: bool = True) -> float:
        """A finite number, ``> 0`` (or ``>= 0`` with ``positive=False``); an int stays an int."""
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

    def integer(self, key: str, default: int = MISSING, *, minimum: int = 1) -> int:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail("must be an integer", value, key)
        if value < minimum:
            self.fail(f"must be >= {minimum}", value, key)
        return value

    def boolean(self, key: str, default: bool = MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            self.fail("must be true or false", value, key)
        return value

    def strings(self, key: str, default: tuple[str, ...] = MISSING) -> tuple[str, ...]:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail("must be a list of non-empty strings", value, key)
        return tuple(value)
