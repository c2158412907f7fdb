"""Generate ``docs/providers.md``: one table row per catalog file, from the catalog itself.

    python -m gateway.commands.providers_doc > docs/providers.md
    python -m gateway.commands.providers_doc --write      # the same, into docs/providers.md
    python -m gateway.commands.providers_doc --check      # exit 1 when docs/providers.md is out of date

It reads the raw YAML of every ``gateway/providers/catalog/*.yaml`` at run time, not parsed specs:
an entry needs no secrets to be documented, and keys or values this module does not know (a new
algorithm, ``handshake``, ``public_key``, ``certificate_hosts``, ...) are shown as well as they can
be, never an error. ``tests/test_providers_doc.py`` fails when the committed file differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.providers.schemes import SCHEMES
from gateway.settings.loader import load_catalog

DEFAULT_OUTPUT = Path("docs/providers.md")
COLUMNS = (
    "Provider", "Display name", "Signature header", "Algorithm", "Signed payload", "Timestamp",
    "Dedup key", "Event type", "Handshake", "Payment", "Tested with", "Docs",
)  # fmt: skip
HEADER = """\
# Providers

<!-- Generated from gateway/providers/catalog/*.yaml by `python -m gateway.commands.providers_doc --write`.
     Do not edit by hand: tests/test_providers_doc.py fails when this file and the catalog differ. -->

Every provider the gateway knows out of the box: one YAML file each in
`gateway/providers/catalog/` (the file name is the provider's name). Configure one by naming it
under `providers:` with its secrets; any key of the entry can be overridden there.

How to read the table:

- **Signature header**: the header and the shape of its value (`<hex>`, `<base64>`, a literal
  prefix such as `sha256=`, or the items of a list such as `t=<timestamp>,v1=<hex>`).
- **Signed payload**: the bytes the provider signs, as the entry's template over `{body}` (the raw
  body), `{timestamp}`, `{id}`, `{url}` and headers; or the named canonicalizer that rebuilds them.
- **Timestamp**: where the signed time is read and how far from the gateway's clock it may be,
  either way (a stale or future time is `stale_timestamp`).
- **Dedup key**: where the event id is read (the first that is present wins); providers that send
  none are deduplicated on the SHA-256 of what they signed.
- **Payment**: whether the CloudEvent carries normalized payment fields (id, status mapped to
  pending, processing, partial, completed, failed, refunded, expired or cancelled, amount,
  currency); see docs/events.md.
- **Tested with**: the oracle of the provider's tests under `tests/providers/`: its official SDK
  where one exists, else its published example or an independent implementation of its docs.

Several secrets may be configured per provider (rotation): each is tried, and the metric says
which one matched. Providers that sign nothing (Mollie's classic webhooks, for example) are not in
the catalog: a gateway config must describe them itself and say `allow_unsigned: true`.
"""


def render(catalog: dict[str, Any] | None = None) -> str:
    """The whole document for ``catalog`` (default: the packaged catalog, read now)."""
    entries = load_catalog() if catalog is None else catalog
    rows = [row(name, entry if isinstance(entry, dict) else {}) for name, entry in sorted(entries.items())]
    lines = [HEADER, f"{len(rows)} providers.", "", _line(COLUMNS), _line(("---",) * len(COLUMNS))]
    lines += [_line(cells) for cells in rows]
    return "\n".join(lines) + "\n"


def row(name: str, entry: dict[str, Any]) -> tuple[str, ...]:
    sig = entry.get("signature")
    sig = sig if isinstance(sig, dict) else None
    return (
        f"`{name}`",
        f"{_text(entry.get('icon', ''))} {_text(entry.get('display_name', name))}".strip(),
        header_shape(sig),
        algorithm(sig),
        signed_payload(sig),
        timestamp_rule(entry.get("timestamp"), sig),
        refs(entry.get("event_id"), none=_hash_key(sig)),
        refs(entry.get("event_type"), none="—"),
        handshake(entry.get("handshake")),
        payment(entry.get("payment")),
        _text(entry.get("tested_with", "—")),
        f"[docs]({entry['docs']})" if entry.get("docs") else "—",
    )


def header_shape(sig: dict[str, Any] | None) -> str:
    if sig is None:
        return "none (unsigned)"
    name = sig.get("header")
    if not name:
        platform = getattr(SCHEMES.get(str(sig.get("canonicalizer", ""))), "platform_header", "")
        also = f"; platform webhooks: `{platform}`: `<{sig.get('encoding', 'hex')}>` of the body" if platform else ""
        return "none: signed inside the body" + also
    value = f"<{sig.get('encoding', 'hex')}>"
    if sig.get("style") == "list":
        kv, sep = str(sig.get("kv_separator", "=")), str(sig.get("item_separator", ","))
        items = [f"{key}{kv}{value}" for key in _names(sig.get("signature_keys"))[:1]]
        if sig.get("timestamp_key"):
            items.insert(0, f"{sig['timestamp_key']}{kv}<timestamp>")
        shape = sep.join(items) + f"{sep}…"
    elif sig.get("algorithm") == "token":
        shape = "<token>"
    else:
        prefix = str(sig.get("prefix", ""))
        shape = f"[{prefix}]{value}" if prefix and sig.get("prefix_optional") else f"{prefix}{value}"
    return f"`{_text(name)}`: `{_text(shape)}`"


def algorithm(sig: dict[str, Any] | None) -> str:
    if sig is None:
        return "—"
    text = str(sig.get("algorithm", "?")).upper()
    notes = []
    if sig.get("secret_encoding") == "whsec":
        notes.append("key: base64 after `whsec_`")
    elif sig.get("secret_encoding") not in (None, "raw"):
        notes.append(f"key: {sig['secret_encoding']}")
    extra = sig.get("public_key")
    if isinstance(extra, dict) and extra.get("algorithm"):
        keys = "/".join(_names(extra.get("signature_keys")))
        notes.append(f"or {str(extra['algorithm']).upper()}" + (f" (`{keys}`)" if keys else ""))
    if sig.get("certificate_hosts"):
        notes.append("certificate from " + ", ".join(f"`{h}`" for h in _names(sig["certificate_hosts"])))
    return _text(text + (f" ({'; '.join(notes)})" if notes else ""))


def signed_payload(sig: dict[str, Any] | None) -> str:
    if sig is None:
        return "—"
    if sig.get("algorithm") == "token":
        return "none: the header is a shared token"
    template = str(sig.get("payload", "{body}"))
    if sig.get("canonicalizer"):
        name = f"canonicalizer `{_text(sig['canonicalizer'])}`"
        return name if template == "{body}" else f"`{_text(template)}`, `{{body}}` by {name}"
    return f"`{_text(template)}`"


def timestamp_rule(ts: Any, sig: dict[str, Any] | None) -> str:
    if not isinstance(ts, dict):
        return "—"
    source = ts.get("from", "header")
    if source == "signature" and sig and sig.get("timestamp_key"):
        where = f"`{_text(sig['timestamp_key'])}` of the signature header"
    elif source == "signature":
        where = "inside the signed payload"
    elif source == "json":
        where = f"body `{_text(ts.get('path', '?'))}`"
    else:
        where = f"header `{_text(ts.get('header', '?'))}`"
    return f"{where}, {_text(ts.get('format', 'unix'))}, ±{_number(ts.get('tolerance', 300))} s"


def refs(value: Any, none: str) -> str:
    """``[{header: X}, {json: a.b}, "c.d"]`` as ``header `X` or body `a.b` or body `c.d```."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    described = [_ref(item) for item in items]
    return " or ".join(described) if described else none


def handshake(value: Any) -> str:
    if not value:
        return "—"
    items = value if isinstance(value, list) else [value]
    names = [str(item.get("name", "yes")) if isinstance(item, dict) else str(item) for item in items]
    return ", ".join(f"`{_text(n)}`" for n in names)


def payment(value: Any) -> str:
    if not isinstance(value, dict):
        return "no"
    unit = "minor units" if value.get("amount_unit") == "minor" else "major units"
    return f"yes ({unit})" if value.get("amount") else "yes"


def _hash_key(sig: dict[str, Any] | None) -> str:
    return "SHA-256 of the canonical body" if sig and sig.get("canonicalizer") else "SHA-256 of the body"


def _ref(item: Any) -> str:
    if isinstance(item, dict) and "header" in item:
        return f"header `{_text(item['header'])}`"
    if isinstance(item, dict) and "json" in item:
        return f"body `{_text(item['json'])}`"
    return f"body `{_text(item)}`"


def _names(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else _text(value)


def _text(value: Any) -> str:
    """A table cell: one line, ``|`` escaped (Markdown tables split on it, even inside code)."""
    return " ".join(str(value).split()).replace("|", "\\|")


def _line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.commands.providers_doc", description=__doc__.splitlines()[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write the document to --output ({DEFAULT_OUTPUT})")
    group.add_argument("--check", action="store_true", help="exit 1 when --output differs from the catalog")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.output.write_text(text, "utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    elif args.check:
        current = args.output.read_text("utf-8") if args.output.exists() else ""
        if current != text:
            print(
                f"{args.output} is out of date: run python -m gateway.commands.providers_doc --write", file=sys.stderr
            )
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
