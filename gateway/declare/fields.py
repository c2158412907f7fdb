"""How a setting is declared: a dataclass field whose metadata says how to read, check and document it.

``gateway/settings/model.py`` declares every setting once, with these helpers, and
``gateway/providers/entry.py`` every key of a provider entry; the generic reader
(``gateway/declare/read.py``), the JSON Schema and the reference tables of docs/configuration.md
(``gateway/settings/schema.py``) are all derived from those declarations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.reader import Reader

AUTO: Any = object()
#: A custom reader: ``(section, key, default) -> value``; it fails through ``section.fail``.
Parse = Callable[[Reader, str, Any], Any]


@dataclass(frozen=True, slots=True)
class Meta:
    """What the reader checks and what the schema and the docs say about one setting.

    Numbers: an ``int`` must be ``>= minimum`` (default 1); a ``float`` must be ``> 0``, or ``>= 0``
    with ``zero_ok``. ``schemes``: a URL must start with one of them (``error`` says what it is).
    """

    doc: str
    key: str = ""  # the YAML key path inside the section, when it is not the field's name
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    zero_ok: bool = False
    schemes: tuple[str, ...] = ()
    scheme_error: str = ""
    masked: bool = False  # the value may hold a password: errors show it masked
    parse: Parse | None = None
    schema: dict[str, Any] | None = None  # the JSON Schema of a ``parse``d value
    shown: Any = AUTO  # the default as YAML writes it (schema ``default``), when not the value itself
    shown_doc: str = ""  # the docs' default column, when the value alone would mislead
    section_doc: str = ""  # for a nested section: its description
    # Read by code of its own, not the generic reader (``providers``, a provider's ``secrets`` and
    # ``public_keys``): declared for the allowed keys, the schema and the docs.
    by_loader: bool = False


def setting(default: Any = dataclasses.MISSING, doc: str = "", **meta: Any) -> Any:
    """A dataclass field that is a config key; no ``default`` makes the key required."""
    info = Meta(doc=doc, **meta)
    return dataclasses.field(default=default, metadata={"setting": info})


def section(cls: type | None = None, doc: str = "", key: str = "") -> Any:
    """A nested section (a dataclass of settings); ``cls`` given: optional, its defaults apply."""
    info = Meta(doc=doc, key=key, section_doc=doc)
    if cls is None:
        return dataclasses.field(metadata={"setting": info})
    return dataclasses.field(default_factory=cls, metadata={"setting": info})


def meta_of(field: dataclasses.Field[Any]) -> Meta | None:
    """The field's declaration, or ``None`` for a field the loader fills itself (``file``)."""
    info = field.metadata.get("setting")
    return info if isinstance(info, Meta) else None


def yaml_key(field: dataclasses.Field[Any]) -> str:
    meta = meta_of(field)
    return meta.key if meta and meta.key else field.name
