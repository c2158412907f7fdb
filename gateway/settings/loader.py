"""``load_config``: read the gateway's YAML and the provider catalog once, check all, freeze.

Every error is a ``ConfigError`` naming file, key path and value, e.g.
``gateway.yaml: providers.stripe.timestamp.tolerance: must be > 0, got -5``. Reading goes on after
an error, so a file with several mistakes raises ``ConfigErrors`` listing each of them.
The settings themselves are declared in ``gateway/settings/model.py`` and read by
``gateway/declare/read.py``; this module adds the file, ``${ENV}`` interpolation, the providers
and the rules that tie several settings together.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gateway.declare.read import read_section, tree
from gateway.errors import ConfigError
from gateway.events import EVENT_STORES
from gateway.providers.parse import parse_provider
from gateway.providers.spec import ProviderSpec
from gateway.reader import Errors, Reader
from gateway.routes import NAME_RE, RESERVED_NAMES
from gateway.secrets import Secret, mask_url
from gateway.settings import values
from gateway.settings.model import EVENT_SCHEMES, STORE_SCHEMES, Settings
from gateway.stores import STORES

__all__ = ["EVENT_SCHEMES", "STORE_SCHEMES", "TOP_KEYS", "build_settings", "deep_merge", "load_catalog", "load_config"]

TOP_KEYS = tuple(tree(Settings))
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEMO_CONFIG = "demo.yaml"
OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load ``path`` (or the embedded demo config when ``None``) and the packaged catalog."""
    env = os.environ if env is None else env
    if path is None:
        text = resources.files("gateway").joinpath(DEMO_CONFIG).read_text("utf-8")
        name = f"<embedded {DEMO_CONFIG}>"
    else:
        name = path
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(path, "", f"cannot read the file: {exc}") from None
    return build_settings(name, _parse_yaml(name, text), load_catalog(), env)


def load_catalog() -> dict[str, Any]:
    """The packaged catalog: ``gateway/providers/catalog/<name>.yaml``, one file per provider."""
    catalog: dict[str, Any] = {}
    folder = resources.files("gateway.providers").joinpath("catalog")
    for entry in sorted(folder.iterdir(), key=lambda f: f.name):
        if entry.name.endswith(".yaml"):
            name = f"gateway/providers/catalog/{entry.name}"
            catalog[entry.name.removesuffix(".yaml")] = Reader(
                name, _parse_yaml(name, entry.read_text("utf-8"))
            ).mapping()
    return catalog


def _parse_yaml(name: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(name, "", f"invalid YAML{where}: {problem}") from None


def build_settings(file: str, data: Any, catalog: dict[str, Any], env: Mapping[str, str]) -> Settings:
    """Check everything in ``data``; raise every error found (``ConfigErrors`` when several)."""
    if not isinstance(data, dict):
        Reader(file, data).fail("must be a mapping of settings", data)
    errors = Errors()
    root = Reader(file, _interpolate(Reader(file, data), env, errors))
    found = read_section(Settings, root, errors)
    found["public_url"] = (found["public_url"] or f"http://{found['host']}:{found['port']}").rstrip("/")
    for rule in RULES:
        if not errors.at(*rule.keys):
            _collect(errors, rule, root, found)
    found["providers"] = _providers(root.sub("providers"), catalog, _provider_defaults(found), errors)
    errors.raise_any()
    return Settings(file=file, **found)


def check_rules(settings: Settings) -> None:
    """The rules across settings, on settings put together otherwise (a reload keeps what needs
    a restart beside the new file's values); raises the first ``ConfigError``."""
    found = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "file"}
    root = Reader(settings.file, {})
    for rule in RULES:
        rule(root, found)


def _collect(errors: Errors, rule: Rule, root: Reader, found: dict[str, Any]) -> None:
    try:
        rule(root, found)
    except ConfigError as exc:
        errors.add(exc)


class Rule:
    """A check across settings, run only when the ``keys`` it reads were read without error;
    ``schema`` says the same in JSON Schema, where it can (it goes into the schema's ``allOf``)."""

    def __init__(
        self,
        keys: tuple[str, ...],
        check: Callable[[Reader, dict[str, Any]], None],
        schema: dict[str, Any] | None = None,
    ) -> None:
        self.keys = keys
        self.check = check
        self.schema = schema

    def __call__(self, root: Reader, found: dict[str, Any]) -> None:
        self.check(root, found)


def _lease_outlives_upstream(root: Reader, found: dict[str, Any]) -> None:
    """In sync mode a claim is held while the upstream is called: a lease that can run out first
    would let a provider's retry claim the id and forward the event a second time."""
    upstream, lease = found["upstream"], found["dedup"].lease
    if upstream.mode == "sync" and lease <= upstream.timeout:
        root.sub("dedup").fail(f"must be longer than upstream.timeout ({upstream.timeout:g}s)", lease, "lease")


def _hold_covers_concurrency(root: Reader, found: dict[str, Any]) -> None:
    """Every upstream slot needs an event to carry: a smaller ``hold`` would quietly lower ``concurrency``."""
    queue = found["upstream"].queue
    if queue.hold < queue.concurrency:
        root.sub("upstream").sub("queue").fail(
            f"must be at least upstream.queue.concurrency ({queue.concurrency})", queue.hold, "hold"
        )


def _queue_needs_durable_events(root: Reader, found: dict[str, Any]) -> None:
    if found["upstream"].mode == "queue" and not EVENT_STORES.backend(found["events"].url).durable:
        root.fail(
            "queue mode needs a durable event store: set events.url to postgresql://...", "queue", "upstream.mode"
        )


def _dashboard_has_a_login(root: Reader, found: dict[str, Any]) -> None:
    dashboard = found["dashboard"]
    if dashboard.enabled and not dashboard.keys and not found["api_keys"]:
        root.sub("dashboard").fail("needs dashboard.keys or management.api_keys to log in with", True, "enabled")


def _store_accepts_url(root: Reader, found: dict[str, Any]) -> None:
    """What the state store's backend finds wrong with its URL and prefix without connecting
    (a cluster's seeds and database, a hash tag in the prefix)."""
    state = found["state"]
    problem = STORES.backend(state.url).check(state.url, state.key_prefix)
    if problem is not None:
        key, message = problem
        root.sub("state").fail(message, mask_url(state.url) if key == "url" else state.key_prefix, key)


def _otlp_installed(root: Reader, found: dict[str, Any]) -> None:
    tracing = found["tracing"]
    if tracing.enabled and tracing.exporter == "otlp" and not _importable(OTLP_MODULE):
        root.sub("tracing").fail(
            "otlp needs the optional exporter: pip install 'webhook-gateway[otlp]'", tracing.exporter, "exporter"
        )


def _metrics_port_apart(root: Reader, found: dict[str, Any]) -> None:
    if found["metrics_port"] and found["metrics_port"] == found["port"]:
        root.sub("listen").fail(
            "must differ from listen.port (0: /metrics on listen.port)", found["metrics_port"], "metrics_port"
        )


def _dashboard_port_apart(root: Reader, found: dict[str, Any]) -> None:
    """Two listeners on one port would both bind through SO_REUSEPORT (with --workers) and the
    kernel would split the connections between them: about half the requests would 404."""
    port = found["dashboard"].port
    for other, key in ((found["port"], "listen.port"), (found["metrics_port"], "listen.metrics_port")):
        if port and port == other:
            root.sub("dashboard").fail(f"must differ from {key} (0: the admin UI on listen.port)", port, "listen.port")


RULES = (
    Rule(("upstream", "dedup"), _lease_outlives_upstream),
    Rule(("upstream",), _hold_covers_concurrency),
    Rule(("listen",), _metrics_port_apart),
    Rule(("listen", "dashboard"), _dashboard_port_apart),
    Rule(
        ("upstream", "events"),
        _queue_needs_durable_events,
        {
            "description": "Queue mode needs a durable event store.",
            "if": {
                "required": ["upstream"],
                "properties": {"upstream": {"required": ["mode"], "properties": {"mode": {"const": "queue"}}}},
            },
            "then": {
                "required": ["events"],
                "properties": {
                    "events": {"required": ["url"], "properties": {"url": {"pattern": "^postgres(ql)?://"}}}
                },
            },
        },
    ),
    Rule(("state",), _store_accepts_url),
    Rule(("tracing",), _otlp_installed),
    Rule(("dashboard", "api_keys"), _dashboard_has_a_login),
)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _provider_defaults(found: dict[str, Any]) -> dict[str, Any]:
    """Gateway-wide defaults of provider keys (gateway/providers/parse.py)."""
    return {
        "max_body_bytes": found["max_body_bytes"],
        "rate_limit": found["per_provider_limit"],
        "dedup_ttl": found["dedup"].ttl,
        "url_from_forwarded_headers": found["url_from_forwarded_headers"],
        "rotation_warn_after": found["rotation_warn_after"],
    }


def _interpolate(root: Reader, env: Mapping[str, str], errors: Errors) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string of the user's file."""

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            try:
                defaulted: list[bool] = []
                text = _ENV_RE.sub(lambda m: _env(m, env, root.file, path, defaulted), value)
                # From the environment alone: a `:-default` is the file's own text, checked as such.
                return values.FromEnv(text) if defaulted and not any(defaulted) else text
            except ConfigError as exc:
                errors.add(exc)
        return value

    return walk(copy.deepcopy(root.value), "")


def _env(match: re.Match[str], env: Mapping[str, str], file: str, path: str, defaulted: list[bool]) -> str:
    name, default = match.group(1), match.group(2)
    value = env.get(name)
    if value:
        defaulted.append(False)
        return value
    if default is not None:
        defaulted.append(True)
        return default
    raise ConfigError(file, path, f"environment variable {name} is not set")


def _providers(r: Reader, catalog: dict[str, Any], defaults: dict[str, Any], errors: Errors) -> dict[str, ProviderSpec]:
    try:
        entries = r.mapping()
    except ConfigError as exc:
        errors.add(exc)
        return {}
    if not entries and not errors.at("providers"):
        errors.add(ConfigError(r.file, r.path, "configure at least one provider"))
    specs = {}
    for name, entry in r.items():
        try:
            spec = _provider(r, name, entry, catalog, defaults, errors)
        except ConfigError as exc:
            errors.add(exc)
            continue
        if spec is not None:
            specs[name] = spec
    return specs


def _provider(
    r: Reader, name: str, entry: Reader, catalog: dict[str, Any], defaults: dict[str, Any], errors: Errors
) -> ProviderSpec | None:
    """One entry (``None`` when its secrets are wrong: those errors are in ``errors``)."""
    if not NAME_RE.match(name):
        r.fail("provider names are lowercase letters, digits, - and _", name, name)
    if name in RESERVED_NAMES:
        r.fail("is a management path, not a provider name", name, name)
    entry.mapping()
    preset = entry.value.get("preset", name if name in catalog else None) if entry.value else name
    if entry.has("preset") and preset not in catalog:
        entry.fail(f"unknown preset; the catalog has {', '.join(sorted(catalog))}", preset, "preset")
    merged = deep_merge(catalog.get(preset, {}) if preset else {}, entry.value or {})
    if preset:
        merged["preset"] = preset
    secrets = _secrets(entry.sub("secrets"), errors)
    if secrets is None:
        return None
    return parse_provider(name, Reader(r.file, merged, entry.path), secrets, defaults)


def _secrets(r: Reader, errors: Errors) -> tuple[Secret, ...] | None:
    """Every secret checked (each error recorded); ``None`` when one is wrong."""
    if r.value is not None and not isinstance(r.value, list):
        return values.secrets(r)  # raises: not a list
    before = len(errors.found)
    found = []
    for item in r.elements():
        try:
            found.append(values.secret(item))
        except ConfigError as exc:
            errors.add(exc)
    return tuple(found) if len(errors.found) == before else None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, mappings merged key by key (presets, overrides)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
