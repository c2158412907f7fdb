"""Generate ``config/gateway.schema.json`` and the reference tables of docs/configuration.md.

Both come from the declarations (field types, defaults, metadata): the gateway's settings in
``gateway/settings/model.py``, a provider entry's keys in ``gateway/providers/entry.py`` and
``sections.py``. The schemas of values read by code and the rules across provider keys come from
``gateway/providers/entry_schema.py``; the catalog names and reserved names from the code::

    python -m gateway.settings.schema --write   # rewrite both files
    python -m gateway.settings.schema --check   # exit 1 when either is stale (tests/test_config_schema.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.declare.fields import AUTO, Meta, meta_of
from gateway.declare.read import Field, Tree, hints, tree, unwrap
from gateway.providers import entry_schema
from gateway.providers.entry import ProviderEntry
from gateway.providers.sections import PaymentEntry, PublicKeyEntry, RateLimitEntry, SignatureEntry, TimestampEntry
from gateway.routes import NAME_RE, RESERVED_NAMES
from gateway.settings.loader import RULES, load_catalog
from gateway.settings.model import GROUPS, Settings

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "config" / "gateway.schema.json"
DOCS_FILE = ROOT / "docs" / "configuration.md"
#: Sections with a ``$defs`` entry of their own (a provider entry's keys may be partial: a preset
#: fills the rest, so the schema requires their keys only of a complete provider).
DEFS: dict[type, str] = {
    ProviderEntry: "provider",
    SignatureEntry: "signature",
    TimestampEntry: "timestamp",
    PaymentEntry: "payment",
    RateLimitEntry: "rateLimit",
}
PARTIAL = (ProviderEntry, SignatureEntry, TimestampEntry, PaymentEntry)


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the gateway's file."""
    top = _object(Settings, tree(Settings), "", "")
    conditions = [rule.schema for rule in RULES if rule.schema]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://webhook-gateway.dev/schemas/gateway.schema.json",
        "title": "Webhook Gateway configuration",
        "description": (
            "The gateway's YAML config (`webhook-gateway run --config FILE`). `${VAR}` and `${VAR:-default}` are "
            "replaced in every string before checks. `webhook-gateway check --config FILE` is the authority; this "
            "schema is for editors and CI. Generated from gateway/settings/model.py by "
            "`python -m gateway.settings.schema --write`: do not edit. Reference: docs/configuration.md."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": top["required"],
        "properties": top["properties"],
        "allOf": conditions,
        "$defs": _provider_defs(),
    }


def _object(cls: type, node: Tree, description: str, path: str, partial: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object"}
    if description:
        out["description"] = description
    out["additionalProperties"] = False
    out["properties"] = {}
    required = []
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            out["properties"][key] = _object(cls, value, GROUPS.get(where, ""), where, partial)
            continue
        out["properties"][key] = _property(cls, value, where, partial)
        if _required(value):
            required.append(key)
    out["required"] = required
    if partial or (not required and cls is not Settings):
        del out["required"]
    return out


def _property(cls: type, f: Field, path: str, partial: bool = False) -> dict[str, Any]:
    meta = meta_of(f)
    assert meta is not None
    kind, optional = unwrap(hints(cls)[f.name])
    if kind in DEFS and meta.schema is None:
        ref = entry_schema.nullable(DEFS[kind]) if optional else entry_schema.ref(DEFS[kind])
        return {**ref, "description": meta.doc}
    if dataclasses.is_dataclass(kind) and meta.parse is None:
        return _object(kind, tree(kind), meta.section_doc or meta.doc, path, partial)  # type: ignore[arg-type]
    out = dict(meta.schema) if meta.schema is not None else _scalar(kind, meta)
    out["description"] = meta.doc
    default = shown_default(f)
    if default is not None:
        out["default"] = default
    return out


def _scalar(kind: Any, meta: Meta) -> dict[str, Any]:
    if meta.choices:
        return {"enum": list(meta.choices)}
    if kind == tuple[str, ...]:
        return dict(entry_schema.STRINGS)
    if kind is bool:
        return {"type": "boolean"}
    if kind is int:
        out: dict[str, Any] = {"type": "integer", "minimum": 1 if meta.minimum is None else meta.minimum}
        if meta.maximum is not None:
            out["maximum"] = meta.maximum
        return out
    if kind is float:
        return {"type": "number", "minimum": 0} if meta.zero_ok else {"type": "number", "exclusiveMinimum": 0}
    out = {"type": "string", "minLength": 1}
    if meta.schemes:
        out["pattern"] = "^(" + "|".join(re.escape(s.removesuffix("://")) for s in meta.schemes) + ")://"
    return out


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())


def _leaf_required(f: Field | Tree) -> bool:
    return not isinstance(f, dict) and _required(f)


def _required(f: Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def shown_default(f: Field) -> Any:
    """The default as YAML would write it, or ``None`` when there is none to show."""
    meta = meta_of(f)
    assert meta is not None
    if meta.shown is not AUTO:
        return meta.shown
    if _required(f) or f.default in (None, "", ()):
        return None
    return f.default


def _provider_defs() -> dict[str, Any]:
    """The provider part: a section per declaration, the values read by code, the rules across keys."""
    defs: dict[str, Any] = dict(entry_schema.DEFS)
    for cls, name in DEFS.items():
        defs[name] = _object(cls, tree(cls), _doc(cls), "", partial=cls in PARTIAL)
    catalog = sorted(load_catalog())
    preset = defs["provider"]["properties"]["preset"]
    defs["provider"]["properties"]["preset"] = {"enum": [*catalog, None], "description": preset["description"]}
    sections: dict[type, str] = {**{cls: DEFS[cls] for cls in PARTIAL}, PublicKeyEntry: "public_key"}
    required = {name: [k for k, f in tree(cls).items() if _leaf_required(f)] for cls, name in sections.items()}
    defs.update(entry_schema.provider_kinds(required))
    defs["providers"] = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": NAME_RE.pattern, "not": {"enum": sorted(RESERVED_NAMES)}},
        "properties": {name: {"$ref": "#/$defs/presetProvider"} for name in catalog},
        "additionalProperties": {"$ref": "#/$defs/customProvider"},
    }
    return defs


# --------------------------------------------------------------------------- the docs table


def table() -> str:
    """The settings table of docs/configuration.md: one row per key, groups and sections first."""
    return _table(_rows(Settings, tree(Settings), ""))


#: The generated tables of docs/configuration.md, by the name in their markers.
TABLES: dict[str, Callable[[], str]] = {
    "settings": table,
    "provider entry": lambda: _table(_rows(ProviderEntry, tree(ProviderEntry), "", expand=False)),
    "signature": lambda: _table(_rows(SignatureEntry, tree(SignatureEntry), "")),
    "timestamp": lambda: _table(_rows(TimestampEntry, tree(TimestampEntry), "")),
    "payment": lambda: _table(_rows(PaymentEntry, tree(PaymentEntry), "")),
}


def _table(rows: list[str]) -> str:
    return "\n".join(["| key | default | meaning |", "| --- | --- | --- |", *rows])


def _rows(cls: type, node: Tree, path: str, expand: bool = True) -> list[str]:
    """``expand``: a nested section's keys get rows of their own (else its own row says "below")."""
    rows = []
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            rows.append(_row(where, "", GROUPS.get(where, "")))
            rows += _rows(cls, value, where)
            continue
        meta = meta_of(value)
        assert meta is not None
        kind, optional = unwrap(hints(cls)[value.name])
        if expand and dataclasses.is_dataclass(kind) and meta.parse is None:
            default = "*required*" if _required(value) else meta.shown_doc if optional else ""
            rows.append(_row(where, default, meta.section_doc or meta.doc))
            rows += _rows(kind, tree(kind), where)  # type: ignore[arg-type]
            continue
        rows.append(_row(where, _default_cell(value, meta), meta.doc))
    return rows


def _row(key: str, default: str, meaning: str) -> str:
    return f"| `{key}` | {default} | {meaning} |".replace("|  |", "| |")


def _default_cell(f: Field, meta: Meta) -> str:
    if meta.shown_doc:
        return meta.shown_doc
    if _required(f):
        return "*required*"
    value = shown_default(f)
    if value is None:
        return "none"
    if isinstance(value, dict):
        return "`{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}`"
    return f"`{json.dumps(value) if isinstance(value, bool) else value}`"


# --------------------------------------------------------------------------- files


def begin(name: str) -> str:
    return f"<!-- BEGIN {name} table: generated by `python -m gateway.settings.schema --write`, do not edit -->"


def end(name: str) -> str:
    return f"<!-- END {name} table -->"


def rendered() -> dict[Path, str]:
    """What each generated file should hold."""
    docs = DOCS_FILE.read_text("utf-8")
    for name, make in TABLES.items():
        start, stop = docs.index(begin(name)) + len(begin(name)), docs.index(end(name))
        docs = f"{docs[:start]}\n{make()}\n{docs[stop:]}"
    return {SCHEMA_FILE: json.dumps(schema(), indent=2, ensure_ascii=False) + "\n", DOCS_FILE: docs}


def stale() -> list[Path]:
    return [path for path, text in rendered().items() if path.read_text("utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.settings.schema", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite the generated files")
    group.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    if args.write:
        for path, text in rendered().items():
            path.write_text(text, "utf-8")
        return 0
    for path in stale():
        print(f"{path} is stale: run python -m gateway.settings.schema --write", file=sys.stderr)
    return 1 if stale() else 0


if __name__ == "__main__":
    sys.exit(main())
