"""``docs/providers.md`` is generated from the catalog by ``gateway.commands.providers_doc``: it must be
exactly what the generator writes now, and the generator must survive any entry a catalog file
may hold (keys it does not know, algorithms it has never seen, handshakes, unsigned entries)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.commands import providers_doc as docs
from gateway.settings.loader import load_catalog

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "providers.md"
CATALOG_DIR = ROOT / "gateway" / "providers" / "catalog"
REGENERATE = "run `python -m gateway.commands.providers_doc --write` and commit docs/providers.md"


def _rows(text: str) -> dict[str, list[str]]:
    """Table rows by provider name, cells split on unescaped pipes."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            rows[match.group(1)] = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
    return rows


def test_document_matches_the_catalog():
    assert DOC.exists(), f"docs/providers.md is missing: {REGENERATE}"
    assert DOC.read_text("utf-8") == docs.render(), f"docs/providers.md differs from the catalog: {REGENERATE}"


def test_one_row_per_catalog_file():
    files = sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))
    rows = _rows(docs.render())
    assert sorted(rows) == files
    assert all(len(cells) == len(docs.COLUMNS) for cells in rows.values()), "a cell broke the table"


def test_every_entry_says_how_it_is_tested_and_links_its_docs():
    rows = _rows(docs.render())
    for name, entry in load_catalog().items():
        assert str(entry.get("tested_with", "")).strip(), (
            f"{name}: add tested_with (official SDK, published example or independent implementation)"
        )
        assert str(entry.get("docs", "")).startswith("https://"), (
            f"{name}: add docs: the provider's signature documentation"
        )
        assert rows[name][docs.COLUMNS.index("Docs")] == f"[docs]({entry['docs']})"


def test_rows_describe_the_scheme():
    rows = _rows(docs.render())
    col = docs.COLUMNS.index
    paddle = rows["paddle"]
    assert paddle[col("Signature header")] == "`Paddle-Signature`: `ts=<timestamp>;h1=<hex>;…`"
    assert paddle[col("Signed payload")] == "`{timestamp}:{body}`"
    assert paddle[col("Timestamp")] == "`ts` of the signature header, unix, ±5 s"
    assert paddle[col("Payment")] == "yes (minor units)"
    linear = rows["linear"]
    assert linear[col("Timestamp")] == "body `webhookTimestamp`, unix_ms, ±60 s"
    assert linear[col("Dedup key")] == "header `Linear-Delivery`"
    assert rows["paystack"][col("Dedup key")] == "SHA-256 of the body"
    assert rows["nowpayments"][col("Signed payload")] == "canonicalizer `sorted_json`"
    assert rows["intercom"][col("Algorithm")] == "HMAC-SHA1"
    assert rows["svix"][col("Algorithm")] == "HMAC-SHA256 (key: base64 after `whsec_`)"
    assert rows["slack"][col("Handshake")] == "`url_verification`"
    assert rows["github"][col("Handshake")] == "—"


STRANGE = {
    "future": {
        "display_name": "Future | Pipes",
        "signature": {
            "algorithm": "ml-dsa-65",
            "header": "X-Sig",
            "style": "list",
            "signature_keys": "v9",
            "public_key": {"algorithm": "ed25519", "signature_keys": ["v1a"]},
            "certificate_hosts": ["certs.example"],
            "payload": "{header:X-A}|{body}",
            "brand_new_key": {"nested": [1, 2]},
        },
        "public_keys": ["whpk_abc"],
        "timestamp": {"from": "json", "path": "meta.sent_at", "format": "iso8601", "tolerance": 0.5},
        "handshake": [{"name": "ping", "when": {"json": "type", "equals": 1}}, "challenge", {"reply": {}}],
        "event_id": ["id", {"header": "X-Id"}, {"json": "a.b"}, 7],
        "payment": {"id": "x"},
        "tested_with": "a\nmultiline\tvalue",
    },
    "unsigned": {"allow_unsigned": True, "body": "form", "handshake": "echo"},
    "bare": {},
    "broken": None,
    "signed-in-body": {
        "signature": {"algorithm": "hmac-sha256", "canonicalizer": "inside"},
        "timestamp": {"from": "signature"},
    },
}


def test_unknown_keys_and_values_never_break_the_generator():
    text = docs.render(STRANGE)
    rows = _rows(text)
    assert sorted(rows) == sorted(STRANGE)
    assert all(len(cells) == len(docs.COLUMNS) for cells in rows.values())
    col = docs.COLUMNS.index
    future = rows["future"]
    assert future[col("Display name")] == "Future \\| Pipes"
    assert future[col("Algorithm")] == "ML-DSA-65 (or ED25519 (`v1a`); certificate from `certs.example`)"
    assert future[col("Signed payload")] == "`{header:X-A}\\|{body}`"
    assert future[col("Timestamp")] == "body `meta.sent_at`, iso8601, ±0.5 s"
    assert future[col("Handshake")] == "`ping`, `challenge`, `yes`"
    assert future[col("Dedup key")] == "body `id` or header `X-Id` or body `a.b` or body `7`"
    assert future[col("Payment")] == "yes"
    assert future[col("Tested with")] == "a multiline value"
    assert rows["unsigned"][col("Signature header")] == "none (unsigned)"
    assert rows["unsigned"][col("Handshake")] == "`echo`"
    assert rows["bare"][col("Dedup key")] == "SHA-256 of the body"
    assert rows["signed-in-body"][col("Signature header")] == "none: signed inside the body"
    assert rows["signed-in-body"][col("Timestamp")] == "inside the signed payload, unix, ±300 s"


def test_cli_prints_writes_and_checks(tmp_path, capsys):
    assert docs.main([]) == 0
    assert capsys.readouterr().out == docs.render()
    target = tmp_path / "providers.md"
    assert docs.main(["--check", "--output", str(target)]) == 1
    assert "--write" in capsys.readouterr().err
    assert docs.main(["--write", "--output", str(target)]) == 0
    assert target.read_text("utf-8") == docs.render()
    assert docs.main(["--check", "--output", str(target)]) == 0


def test_write_and_check_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        docs.main(["--write", "--check"])
    assert "not allowed with" in capsys.readouterr().err
