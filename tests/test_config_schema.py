"""``config/gateway.schema.json``, the reference tables of docs/configuration.md, and the example configs.

Every key is declared once: the gateway's settings in ``gateway/settings/model.py``, a provider
entry's keys in ``gateway/providers/entry.py`` and ``sections.py``. The schema and the docs tables
are generated from those declarations, so the first tests only check that the committed files are
what the generator writes now. The rest is behaviour: what the loader refuses the schema refuses
too (and the other way round), the schema's defaults are what the loader fills in, every catalog
entry and shipped config validates and loads, and errors name file, key and value.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from gateway.declare.fields import setting, yaml_key
from gateway.declare.read import hints, leaves, read_section, tree
from gateway.errors import ConfigError
from gateway.events import EVENT_STORES
from gateway.providers.entry import ProviderEntry
from gateway.providers.schemes import NAMES
from gateway.providers.sections import PaymentEntry, SignatureEntry, TimestampEntry
from gateway.providers.spec import PLACEHOLDERS
from gateway.reader import Errors, Reader
from gateway.routes import NAME_RE, RESERVED_NAMES
from gateway.settings import schema as generator
from gateway.settings.loader import TOP_KEYS, build_settings, load_catalog, load_config
from gateway.settings.model import Settings
from gateway.stores import STORES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA: dict[str, Any] = json.loads((ROOT / "config" / "gateway.schema.json").read_text("utf-8"))
EXAMPLE = ROOT / "config" / "gateway.example.yaml"
MINIMAL = ROOT / "config" / "minimal.yaml"
DEMO = ROOT / "gateway" / "demo.yaml"
CATALOG = load_catalog()
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)

#: A base config for probing the loader: a catalog provider and a complete inline one.
CUSTOM: dict[str, Any] = {
    "secrets": ["custom-secret"],
    "signature": {"algorithm": "hmac-sha256", "header": "X-Custom-Signature"},
    "timestamp": {"header": "X-Custom-Timestamp"},
    "payment": {"id": "data.id"},
    "rate_limit": {"rate": 10},
}
BASE: dict[str, Any] = {
    "upstream": {"url": "http://127.0.0.1:9000/events"},
    "providers": {"stripe": {"secrets": ["${STRIPE_WEBHOOK_SECRET}"]}, "custom": CUSTOM},
}
ENV = {"STRIPE_WEBHOOK_SECRET": "whsec_test_secret"}


# --------------------------------------------------------------------------- helpers


def load(data: Any, env: dict[str, str] | None = None) -> Settings:
    return build_settings("test.yaml", data, CATALOG, ENV if env is None else env)


def with_value(path: tuple[str, ...], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE if base is None else base)
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


def loader_error(data: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        load(data)
    return str(exc.value)


def at(pointer: str) -> Any:
    """The schema node at a ``#/...`` pointer, ``$ref`` followed (its siblings kept)."""
    node: Any = SCHEMA
    for part in pointer.removeprefix("#").strip("/").split("/") if pointer != "#" else ():
        node = node[int(part) if isinstance(node, list) else part]
    return at_node(node)


def schema_keys(pointer: str) -> set[str]:
    node = at(pointer)
    if "properties" in node:
        return set(node["properties"])
    keys: set[str] = set()  # a oneOf of objects (a field reference)
    for alternative in node["oneOf"]:
        keys |= set(at_node(alternative).get("properties", {}))
    return keys


def at_node(node: Any) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return {**at(node["$ref"]), **siblings} if siblings else at(node["$ref"])
    return node


def errors(data: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def dotted(value: Any) -> str | None:
    """Test ids: a config path as ``upstream.queue``; other parameters get pytest's default."""
    return ".".join(value) or "top" if isinstance(value, tuple) else None


# --------------------------------------------------------------------------- generated files


def test_generated_schema_and_docs_table_are_current() -> None:
    """Fails when a setting changed without ``python -m gateway.settings.schema --write``."""
    stale = [str(path.relative_to(ROOT)) for path in generator.stale()]
    assert stale == [], "run: python -m gateway.settings.schema --write"


def test_the_check_command_exits_1_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_of_schema = tmp_path / "gateway.schema.json"
    copy_of_schema.write_text(json.dumps({**SCHEMA, "title": "edited by hand"}), "utf-8")
    copy_of_docs = tmp_path / "configuration.md"
    copy_of_docs.write_text(generator.DOCS_FILE.read_text("utf-8"), "utf-8")
    monkeypatch.setattr(generator, "SCHEMA_FILE", copy_of_schema)
    monkeypatch.setattr(generator, "DOCS_FILE", copy_of_docs)
    assert generator.main(["--check"]) == 1
    assert generator.main(["--write"]) == 0
    assert generator.main(["--check"]) == 0
    assert json.loads(copy_of_schema.read_text("utf-8")) == SCHEMA


def test_every_declared_setting_is_in_the_schema_and_the_table() -> None:
    table = generator.table()
    declared = {".".join(path) for path in leaf_paths(Settings)}
    assert "upstream.queue.lease" in declared and "state.on_error.dedup" in declared
    for dotted_key in declared:
        node: Any = SCHEMA
        for key in dotted_key.split("."):
            node = node["properties"][key]
        assert node["description"], dotted_key
        assert f"| `{dotted_key}` |" in table, dotted_key
    assert set(SCHEMA["properties"]) == set(TOP_KEYS)


#: A provider entry's declarations: their ``$defs`` entry and their docs table.
PROVIDER_PARTS = [
    (ProviderEntry, "provider", "provider entry"),
    (SignatureEntry, "signature", "signature"),
    (TimestampEntry, "timestamp", "timestamp"),
    (PaymentEntry, "payment", "payment"),
]


@pytest.mark.parametrize(("cls", "name", "table"), PROVIDER_PARTS, ids=[p[1] for p in PROVIDER_PARTS])
def test_every_provider_key_is_in_the_schema_and_its_table(cls: type, name: str, table: str) -> None:
    rows = generator.TABLES[table]()
    properties = SCHEMA["$defs"][name]["properties"]
    assert set(properties) == set(tree(cls))
    for f in leaves(tree(cls)):
        key = yaml_key(f)
        assert properties[key]["description"], key
        assert f"| `{key}` |" in rows, key
    assert "required" not in SCHEMA["$defs"][name], "an entry on a preset overrides only some keys"


def leaf_paths(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for f in leaves(tree(cls)):
        path = (*prefix, *yaml_key(f).split("."))
        kind = hints(cls)[f.name]
        if dataclasses.is_dataclass(kind):
            yield from leaf_paths(kind, path)
        else:
            yield path


def test_a_new_setting_is_one_field() -> None:
    """What docs/configuration.md promises a contributor: declare a field, and the reader checks it,
    the schema and the docs table show it. (A toy section, so the real declaration is untouched.)"""
    @dataclasses.dataclass(frozen=True)
    class Toy:
        retries: int = setting(3, "Attempts.", minimum=0)
        mode: str = setting("fast", "How.", choices=("fast", "slow"), key="tuning.mode")

    errors = Errors()
    assert read_section(Toy, Reader("t.yaml", {"retries": 0, "tuning": {"mode": "slow"}}), errors) == {
        "retries": 0,
        "mode": "slow",
    }
    assert errors.found == []
    read_section(Toy, Reader("t.yaml", {"retries": -1, "tuning": {"mode": "warp", "x": 1}}), errors)
    assert [str(e) for e in errors.found] == [
        "t.yaml: retries: must be >= 0, got -1",
        "t.yaml: tuning.x: unknown key; allowed: mode",
        "t.yaml: tuning.mode: must be one of fast, slow, got 'warp'",
    ]
    node = generator._object(Toy, tree(Toy), "", "")
    assert node["properties"]["retries"] == {"type": "integer", "minimum": 0, "description": "Attempts.", "default": 3}
    assert node["properties"]["tuning"]["properties"]["mode"]["enum"] == ["fast", "slow"]


@dataclasses.dataclass(frozen=True)
class ToyLimit:
    rate: float = setting(doc="Per second.")


@dataclasses.dataclass(frozen=True)
class ToyProvider:
    ttl: float | None = setting(None, "Seconds (default: the gateway's).")
    tags: tuple[str, ...] = setting((), "Labels.")
    limit: ToyLimit | None = setting(None, "A limit.")


def test_optional_keys_and_sections_of_a_provider_declaration() -> None:
    """``X | None`` with the default ``None`` (absent or ``null``: ``None``, filled in later from a
    gateway-wide default), string lists, and an optional section whose keys are checked when given."""
    errors = Errors()
    absent = read_section(ToyProvider, Reader("t.yaml", {"ttl": None}), errors)
    assert absent == {"ttl": None, "tags": (), "limit": None}
    found = read_section(ToyProvider, Reader("t.yaml", {"ttl": 5, "tags": "a", "limit": {"rate": 2}}), errors)
    assert found == {"ttl": 5.0, "tags": ("a",), "limit": ToyLimit(rate=2)}
    assert errors.found == []
    read_section(ToyProvider, Reader("t.yaml", {"ttl": "5", "tags": [""], "limit": {}}), errors)
    assert [str(e) for e in errors.found] == [
        "t.yaml: ttl: must be a number, got '5'",
        "t.yaml: tags: must be a list of non-empty strings, got ['']",
        "t.yaml: limit.rate: is required",
    ]


# --------------------------------------------------------------------------- sections and keys

#: config path (``custom`` is the inline provider of BASE) -> the schema node describing it
SECTIONS: dict[tuple[str, ...], str] = {
    ("rate_limits", "per_source"): "#/$defs/rateLimit",
    ("providers", "custom"): "#/$defs/provider",
    ("providers", "custom", "signature"): "#/$defs/signature",
    ("providers", "custom", "timestamp"): "#/$defs/timestamp",
    ("providers", "custom", "payment"): "#/$defs/payment",
    ("providers", "custom", "rate_limit"): "#/$defs/rateLimit",
    ("providers", "custom", "event_id"): "#/$defs/fieldRef",
}


@pytest.mark.parametrize(("path", "pointer"), SECTIONS.items(), ids=dotted)
def test_section_keys_are_what_the_loader_accepts(path: tuple[str, ...], pointer: str) -> None:
    message = loader_error(with_value((*path, "zz_not_a_key"), 1))
    match = re.search(r"zz_not_a_key: unknown key[^;]*; allowed: (.+)$", message, re.M)
    assert match, message
    assert schema_keys(pointer) == set(match.group(1).split(", "))


# --------------------------------------------------------------------------- lists from the code


def test_lists_that_come_from_the_code() -> None:
    assert set(at("#/$defs/signature/properties/canonicalizer")["enum"]) == {*NAMES, ""}
    assert set(at("#/$defs/provider/properties/preset")["enum"]) == {*CATALOG, None}
    assert set(at("#/$defs/providers")["properties"]) == set(CATALOG)
    names = at("#/$defs/providers")["propertyNames"]
    assert names["pattern"] == NAME_RE.pattern
    assert set(names["not"]["enum"]) == RESERVED_NAMES


@pytest.mark.parametrize(
    ("key", "schemes", "others"),
    [("state", STORES.schemes, ("postgresql://", "memcached://")), ("events", EVENT_STORES.schemes, ("redis://", "sqlite://"))],
)
def test_store_url_schemes(key: str, schemes: tuple[str, ...], others: tuple[str, ...]) -> None:
    for scheme in (*schemes, *others):
        data = with_value((key, "url"), f"{scheme}user:pw@host/0")
        accepted = scheme in schemes
        assert (errors(data) == []) is accepted, (scheme, errors(data))
        if accepted:
            load(data)
        else:
            loader_error(data)


def test_payload_placeholders() -> None:
    good = ".".join(f"{{{p}}}" for p in PLACEHOLDERS) + "{header:X-Account}"
    payload = ("providers", "custom", "signature", "payload")
    custom_signed = with_value(("providers", "custom", "signature", "id_header"), "X-Id")
    assert errors(with_value(payload, good, custom_signed)) == []
    load(with_value(payload, good, custom_signed))
    for bad in ("{nope}", "{}", "{header:}"):
        assert errors(with_value(payload, bad)), bad
        loader_error(with_value(payload, bad))


# --------------------------------------------------------------------------- defaults

SMALL = {
    "upstream": {"url": "http://127.0.0.1:9000/events"},
    "providers": {
        "custom": {
            "secrets": ["s"],
            "signature": {"algorithm": "hmac-sha256", "header": "X-Sig"},
            "timestamp": {"header": "X-Ts"},
            "payment": {"id": "id"},
        }
    },
}


#: Each provider section's values in the loaded spec.
SPEC_PARTS: dict[str, Callable[[Any], Any]] = {
    "provider": lambda spec: spec,
    "signature": lambda spec: spec.signature,
    "timestamp": lambda spec: spec.timestamp,
    "payment": lambda spec: spec.payment,
}
#: Defaults that leave no trace in the spec: only decoded keys are kept, and a signed provider
#: does not record allow_unsigned.
UNREADABLE = {("signature", "secret_encoding"), ("provider", "allow_unsigned")}


def test_provider_defaults_are_the_loaders() -> None:
    """Every ``default`` the schema shows for a provider key is what the loader fills in."""
    spec = load(SMALL).providers["custom"]
    checked, differ = [], {}
    for cls, name, _ in PROVIDER_PARTS:
        for key, node in SCHEMA["$defs"][name]["properties"].items():
            if "default" not in node or (name, key) in UNREADABLE:
                continue
            value = getattr(SPEC_PARTS[name](spec), tree(cls)[key].name)  # type: ignore[union-attr]
            value = {"payload": lambda v: v.source, "repeated": lambda v: "any" if v else "refuse"}.get(
                key, lambda v: v
            )(value)
            checked.append(f"{name}.{key}")
            if value != node["default"]:
                differ[f"{name}.{key}"] = (node["default"], value)
    assert differ == {}, "(schema default, loader default)"
    assert {"provider.body", "signature.payload", "timestamp.tolerance", "payment.amount_unit"} <= set(checked)


# --------------------------------------------------------------------------- agreement

REJECTED: dict[str, dict[str, Any]] = {
    "unknown top key": with_value(("listne",), {"port": 1}),
    "port too large": with_value(("listen", "port"), 70000),
    "public_url scheme": with_value(("public_url",), "ftp://example.com"),
    "upstream without url": with_value(("upstream",), {"timeout": 5}),
    "header value null": with_value(("upstream", "headers"), {"X-Empty": None}),
    "header line break": with_value(("upstream", "headers"), {"X-Bad": "a\r\nInjected: 1"}),
    "queue mode on memory events": with_value(("upstream", "mode"), "queue"),
    "no providers": with_value(("providers",), {}),
    "upper-case provider name": with_value(("providers", "Stripe"), {"secrets": ["x"]}),
    "reserved provider name": with_value(("providers", "events"), {"secrets": ["x"]}),
    "unknown preset": with_value(("providers", "acme"), {"preset": "strype", "secrets": ["x"]}),
    "inline provider without signature": with_value(("providers", "acme"), {"secrets": ["x"]}),
    "signed provider without secrets": with_value(("providers", "github"), {}),
    "secrets as a string": with_value(("providers", "stripe", "secrets"), "whsec_oops"),
    "empty secret": with_value(("providers", "stripe", "secrets"), [""]),
    "list style without keys": with_value(("providers", "custom", "signature", "style"), "list"),
    "negative tolerance": with_value(("providers", "stripe", "timestamp"), {"tolerance": -5}),
    "header timestamp without header": with_value(("providers", "custom", "timestamp"), {"format": "unix"}),
    "json timestamp without path": with_value(("providers", "custom", "timestamp"), {"from": "json"}),
    "zero rate": with_value(("rate_limits", "per_source"), {"rate": 0}),
    "bad json path": with_value(("providers", "custom", "event_id"), "data..id"),
    "bad redact path": with_value(("providers", "custom", "redact"), ["items[x]"]),
    "payment without id": with_value(("providers", "custom", "payment"), {"status": "status"}),
    "unknown canonicalizer": with_value(("providers", "custom", "signature", "canonicalizer"), "xml_c14n"),
    "negative inflight wait": with_value(("dedup", "inflight_wait"), -1),
    "provider body kind": with_value(("providers", "custom", "body"), "xml"),
    "negative min_secret_bytes": with_value(("providers", "custom", "min_secret_bytes"), -1),
    "dedup_signed_content not a bool": with_value(("providers", "custom", "dedup_signed_content"), "yes"),
    "allowlist not a list": with_value(("providers", "custom", "ip_allowlist"), "10.0.0.0/8"),
    "provider rate limit without rate": with_value(("providers", "custom", "rate_limit"), {"burst": 5}),
    "provider burst zero": with_value(("providers", "custom", "rate_limit"), {"rate": 5, "burst": 0}),
    "bad rotation duration": with_value(("providers", "custom", "rotation_warn_after"), "soon"),
    "zero dedup_ttl": with_value(("providers", "custom", "dedup_ttl"), 0),
    "certificate host with a scheme": with_value(
        ("providers", "custom", "signature", "certificate_hosts"), ["https://api.paypal.com"]
    ),
    "handshake without when": with_value(("providers", "custom", "handshake"), {"reply": {"status": 204}}),
    "public key scheme without algorithm": with_value(
        ("providers", "custom", "signature", "public_key"), {"signature_keys": ["v1a"]}
    ),
    "unknown public key scheme key": with_value(
        ("providers", "custom", "signature", "public_key"), {"algorithm": "ed25519", "keys": ["v1a"]}
    ),
}

ACCEPTED: dict[str, dict[str, Any]] = {
    "base": BASE,
    "unsigned with allow_unsigned": with_value(("providers", "crm"), {"allow_unsigned": True, "body": "form"}),
    "a preset under another name": with_value(("providers", "shop-eu"), {"preset": "shopify", "secrets": ["x"]}),
    "rate limits off": with_value(("rate_limits",), {"per_source": False, "per_provider": None}),
    "queue mode on postgresql": with_value(
        ("events",), {"url": "postgresql://u:p@db/x"}, with_value(("upstream", "mode"), "queue")
    ),
    "refs in every form": with_value(
        ("providers", "custom", "event_id"), ["id", {"json": "data.items[0].id"}, {"header": "X-Id"}]
    ),
    "a space separator": with_value(
        ("providers", "custom", "signature"),
        {"algorithm": "hmac-sha256", "header": "S", "style": "list", "item_separator": " ", "signature_keys": "v1"},
    ),
    "ip networks": with_value(("trusted_proxies",), ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]),
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_schema_refuses_what_the_loader_refuses(data: dict[str, Any]) -> None:
    loader_error(data)
    assert errors(data), "the schema accepts a config the loader refuses"


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_schema_accepts_what_the_loader_accepts(data: dict[str, Any]) -> None:
    load(data)
    assert errors(data) == []


def test_every_error_of_a_provider_entry_names_file_key_and_value() -> None:
    """The generic reader goes on after a bad key: one run reports each bad key of an entry."""
    custom = {**CUSTOM, "body": "xml", "max_body_bytes": 0, "zz_typo": 1, "timestamp": {"tolerance": -5}}
    message = loader_error(with_value(("providers", "custom"), custom))
    assert message.splitlines() == [
        "test.yaml: providers.custom.zz_typo: unknown key; allowed: " + ", ".join(sorted(tree(ProviderEntry))),
        "test.yaml: providers.custom.body: must be one of any, form, json, got 'xml'",
        "test.yaml: providers.custom.timestamp.tolerance: must be > 0, got -5",
        "test.yaml: providers.custom.max_body_bytes: must be >= 1, got 0",
    ]


def test_status_map_values_are_the_normalized_vocabulary() -> None:
    """Stricter than the loader, on purpose: the upstream relies on a closed status vocabulary."""
    vocabulary = set(at("#/$defs/payment/properties/status_map")["additionalProperties"]["enum"])
    assert vocabulary == {"pending", "processing", "partial", "completed", "failed", "refunded", "expired", "cancelled"}
    assert errors(with_value(("providers", "custom", "payment", "status_map"), {"ok": "paid"}))


# --------------------------------------------------------------------------- the shipped files


@pytest.mark.parametrize("path", [EXAMPLE, MINIMAL, DEMO], ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    assert errors(read_yaml(path)) == []


def test_catalog_entries_are_complete_providers() -> None:
    entry = Draft202012Validator({"$ref": "#/$defs/completeProvider", "$defs": SCHEMA["$defs"]})
    for name, spec in CATALOG.items():
        problems = [f"{e.json_path}: {e.message}" for e in entry.iter_errors(spec)]
        assert problems == [], name
    link = ROOT / "config" / "providers"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == (ROOT / "gateway" / "providers" / "catalog").resolve()


def test_minimal_config_loads() -> None:
    settings = load_config(str(MINIMAL), env=ENV)
    assert sorted(settings.providers) == ["github", "stripe"]
    with pytest.raises(ConfigError, match=r"minimal\.yaml: providers\.stripe\.secrets\[0\]: .*STRIPE_WEBHOOK_SECRET"):
        load_config(str(MINIMAL), env={})


def example_environment(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The environment the example needs (every ``${VAR}`` set, ``WEBHOOK_SECRETS_DIR`` pointing
    at tmp_path where every secret file it names is created) and the secret values, by source."""
    text = EXAMPLE.read_text("utf-8")
    env = {"WEBHOOK_SECRETS_DIR": str(tmp_path)}
    secrets = {}
    for name in set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)):
        # base64 of a key: valid for every secret_encoding (raw, base64)
        env[name] = secrets[name] = base64.b64encode(f"test-{name}-value".encode()).decode()
    for name in set(re.findall(r"file:\$\{WEBHOOK_SECRETS_DIR:-[^}]+\}/([\w.-]+)", text)):
        secrets[name] = f"test-file-secret-{name}"
        (tmp_path / name).write_text(secrets[name] + "\n", "utf-8")
    return env, secrets


def test_example_config_loads(tmp_path: Path) -> None:
    env, secrets = example_environment(tmp_path)
    settings = load_config(str(EXAMPLE), env=env)
    assert settings.upstream.mode == "queue"
    assert len(settings.providers["stripe"].signature.secrets) == 2
    assert settings.providers["shopify-eu"].preset == "shopify"
    assert settings.providers["acme-billing"].timestamp.source == "signature"
    assert settings.providers["legacy-crm"].signature is None
    assert len(settings.api_keys) == 2
    shown = repr(settings)
    assert [name for name, value in secrets.items() if value in shown] == [], "a secret reached a repr"


def example_nodes(path: tuple[str, ...]) -> Iterator[Any]:
    """The example's values at ``path``; ``*`` matches every provider."""
    nodes: list[Any] = [read_yaml(EXAMPLE)]
    for key in path:
        nodes = [n[k] for n in nodes if isinstance(n, dict) for k in (n if key == "*" else [key]) if k in n]
    for node in nodes:
        yield from (node if isinstance(node, list) else [node])


def test_example_shows_every_gateway_setting() -> None:
    example = read_yaml(EXAMPLE)
    missing = []
    for path in leaf_paths(Settings):
        node = example
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None and path != ("providers",):
            missing.append(".".join(path))
    assert missing == [], "settings config/gateway.example.yaml does not show"


def test_example_uses_every_key() -> None:
    sources: dict[str, list[tuple[str, ...]]] = {
        pointer: [tuple("*" if k == "custom" else k for k in path)] for path, pointer in SECTIONS.items()
    }
    sources["#/$defs/rateLimit"] = [("rate_limits", k) for k in ("per_source", "per_provider")]
    sources["#/$defs/rateLimit"].append(("providers", "*", "rate_limit"))
    refs = [("providers", "*", key) for key in ("event_id", "event_type")]
    refs += [("providers", "*", "payment", key) for key in ("id", "status", "amount", "currency")]
    sources["#/$defs/fieldRef"] = refs
    missing = {}
    for pointer, paths in sources.items():
        used = {key for path in paths for node in example_nodes(path) if isinstance(node, dict) for key in node}
        if schema_keys(pointer) - used:
            missing[pointer] = sorted(schema_keys(pointer) - used)
    assert missing == {}, "keys config/gateway.example.yaml does not show"
