"""One reader for every section: walks a settings dataclass's fields and reads each from the YAML.

The field's type says which ``Reader`` accessor checks it (``str``, ``int``, ``float``, ``bool``,
``tuple[str, ...]``, a nested section; ``X | None`` with the default ``None``: the key may be absent
or ``null``, read as ``None``), its metadata (``gateway.declare.fields.Meta``) adds choices, bounds, URL
schemes or a custom ``parse``. An error in one key is recorded and reading goes on, so
``webhook-gateway check`` reports every error of the file in one run.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator
from typing import Any

from gateway.declare.fields import Meta, meta_of, yaml_key
from gateway.errors import ConfigError
from gateway.reader import MISSING, Errors, Reader
from gateway.secrets import mask_url

Field = dataclasses.Field[Any]
#: A section's YAML keys as a tree: a leaf is the field read there.
Tree = dict[str, "Field | Tree"]


def read_section(cls: type, r: Reader, errors: Errors) -> dict[str, Any]:
    """The keyword arguments of ``cls`` found at ``r``: every declared field, a default where the
    YAML has none (or where the value was wrong: the error is in ``errors``)."""
    out: dict[str, Any] = {}
    _read_tree(cls, tree(cls), r, errors, out)
    return out


@functools.cache
def tree(cls: type) -> Tree:
    """``{"listen": {"host": <field host>, ...}, "upstream": <field upstream>, ...}``."""
    root: Tree = {}
    for f in dataclasses.fields(cls):
        if meta_of(f) is None:
            continue
        *groups, last = yaml_key(f).split(".")
        node = root
        for group in groups:
            node = typing.cast(Tree, node.setdefault(group, {}))
        node[last] = f
    return root


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def leaves(node: Tree) -> Iterator[Field]:
    for value in node.values():
        if isinstance(value, dict):
            yield from leaves(value)
        else:
            yield value


def _read_tree(cls: type, node: Tree, r: Reader, errors: Errors, out: dict[str, Any]) -> None:
    _check_keys(r, node, errors)
    for key, value in node.items():
        if isinstance(value, dict):
            _read_tree(cls, value, r.sub(key), errors, out)
            continue
        if meta_of(value).by_loader:  # type: ignore[union-attr]
            continue
        try:
            out[value.name] = read_field(cls, value, r, key, errors)
        except ConfigError as exc:
            errors.add(exc)
            out[value.name] = default_of(value)


def _check_keys(r: Reader, node: Tree, errors: Errors) -> None:
    """Every unknown key is one error (``Reader.mapping`` stops at the first)."""
    try:
        keys = list(Reader(r.file, r.value, r.path).mapping())
    except ConfigError as exc:
        errors.add(exc)
        r.value = None  # read the defaults below
        return
    for key in keys:
        try:
            Reader(r.file, {key: None}, r.path).mapping(node)
        except ConfigError as exc:
            errors.add(exc)


def default_of(f: Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def read_field(cls: type, f: Field, r: Reader, key: str, errors: Errors) -> Any:
    meta = meta_of(f)
    assert meta is not None
    kind, optional = unwrap(hints(cls)[f.name])
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    default = MISSING if required else default_of(f)
    if optional and default is None and not r.has(key):
        return None
    if meta.parse is not None:
        return meta.parse(r, key, default)
    if dataclasses.is_dataclass(kind):  # a missing section is read as empty: its required keys say so
        section = typing.cast(type, kind)
        return section(**read_section(section, r.sub(key), errors))
    return _scalar(kind, meta, r, key, default)


def unwrap(kind: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(kind, False)``."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return kind, False


def _scalar(kind: Any, meta: Meta, r: Reader, key: str, default: Any) -> Any:
    if kind == tuple[str, ...]:
        return r.strings(key, default)
    if kind is bool:
        return r.boolean(key, default)
    if kind is int:
        value = r.integer(key, default, minimum=1 if meta.minimum is None else meta.minimum)
        if meta.maximum is not None and value > meta.maximum:
            r.fail(f"must be <= {meta.maximum}", value, key)
        return value
    if kind is float:
        return float(r.number(key, default, positive=not meta.zero_ok))
    if kind is str:
        return _text(meta, r, key, default)
    raise TypeError(f"{key}: no reader for {kind!r}; give the setting a parse= function")


def _text(meta: Meta, r: Reader, key: str, default: Any) -> str:
    # An optional string (default ""): absent means empty, but a value given must not be empty.
    value = (r.text(key, None, meta.choices) or "") if default == "" else r.text(key, default, meta.choices)
    if meta.schemes and value and not value.startswith(meta.schemes):
        shown = mask_url(value) if meta.masked else value
        if meta.scheme_error:
            r.fail(f"{meta.scheme_error}; supported: {', '.join(meta.schemes)}", shown, key)
        r.fail(f"must start with {' or '.join(meta.schemes)}", shown, key)
    return value
