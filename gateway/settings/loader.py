"""``load_config``: read the gateway's YAML and the provider catalog once, check all, freeze.

Every error is a ``ConfigError`` naming file, key path and value, e.g.
``gateway.yaml: providers.stripe.timestamp.tolerance: must be > 0, got -5``.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.errors import ConfigError
from gateway.providers.parse import NAME_RE, RESERVED_NAMES, parse_duration, parse_networks, parse_provider, parse_rate
from gateway.providers.spec import ProviderSpec
from gateway.secrets import Secret, mask_url
from gateway.settings.model import (
    DedupSettings,
    EventsSettings,
    PassthroughSettings,
    QueueSettings,
    Settings,
    StateSettings,
    TracingSettings,
    UpstreamSettings,
)
from gateway.settings.reader import Reader

TOP_KEYS = (
    "listen", "public_url", "upstream", "providers", "trusted_proxies", "limits", "rate_limits",
    "dedup", "state", "events", "management", "logging", "tracing", "shutdown",
    "url_from_forwarded_headers", "rotation_warn_after", "passthrough",
)  # fmt: skip
EVENT_SCHEMES = ("memory://", "postgresql://", "postgres://")
STORE_SCHEMES = ("memory://", "redis://", "rediss://")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
DEMO_CONFIG = "demo.yaml"


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
    root = Reader(file, data)
    if not isinstance(data, dict):
        root.fail("must be a mapping of settings", data)
    root.mapping(TOP_KEYS)
    data = _interpolate(root, env)
    root = Reader(file, data)
    listen = root.sub("listen")
    listen.mapping(("host", "port", "metrics_port"))
    port = listen.integer("port", 8080, minimum=0)
    if port > 65535:
        listen.fail("must be <= 65535", port, "port")
    metrics_port = listen.integer("metrics_port", 0, minimum=0)
    if metrics_port > 65535 or (metrics_port and metrics_port == port):
        listen.fail("must be <= 65535 and differ from listen.port (0: /metrics on listen.port)", metrics_port,
                    "metrics_port")  # fmt: skip
    host = listen.text("host", "127.0.0.1")
    public_url = root.text("public_url", f"http://{host}:{port}")
    if not public_url.startswith(("http://", "https://")):
        root.fail("must start with http:// or https://", public_url, "public_url")
    limits = root.sub("limits")
    limits.mapping(("max_body_bytes", "body_timeout"))
    rates = root.sub("rate_limits")
    rates.mapping(("per_source", "per_provider"))
    dedup = root.sub("dedup")
    dedup.mapping(("ttl", "lease", "inflight_wait", "max_entries"))
    defaults = {
        "max_body_bytes": limits.integer("max_body_bytes", 1024 * 1024),
        "rate_limit": _limit(rates, "per_provider", {"rate": 1000, "burst": 2000}),
        "dedup_ttl": dedup.number("ttl", 3 * 24 * 3600),
        # gateway-wide defaults of provider keys (gateway/providers/parse.py)
        "url_from_forwarded_headers": root.boolean("url_from_forwarded_headers", False),
        "rotation_warn_after": parse_duration(root, "rotation_warn_after", None),
    }
    upstream = _upstream(root.sub("upstream"))
    events = _events(root.sub("events"))
    if upstream.mode == "queue" and not events.url.startswith(("postgresql://", "postgres://")):
        root.fail(
            "queue mode needs a durable event store: set events.url to postgresql://...", "queue", "upstream.mode"
        )
    return Settings(
        file=file,
        host=host,
        port=port,
        public_url=public_url.rstrip("/"),
        upstream=upstream,
        events=events,
        providers=_providers(root.sub("providers"), catalog, defaults),
        trusted_proxies=parse_networks(root.sub("trusted_proxies")),
        body_timeout=float(limits.number("body_timeout", 10.0)),
        per_source_limit=_limit(rates, "per_source", {"rate": 100, "burst": 200}),
        dedup=DedupSettings(
            lease=_lease(dedup, upstream),
            inflight_wait=float(dedup.number("inflight_wait", 2.0, positive=False)),
            max_entries=dedup.integer("max_entries", 1_000_000),
        ),
        state=_state(root.sub("state")),
        api_keys=_api_keys(root.sub("management")),
        log_level=_logging(root.sub("logging")),
        tracing=_tracing(root.sub("tracing")),
        passthrough=_passthrough(root.sub("passthrough"), upstream),
        metrics_port=metrics_port,
        **_shutdown(root.sub("shutdown")),
    )


def _lease(dedup: Reader, upstream: UpstreamSettings) -> float:
    """In sync mode a claim is held while the upstream is called: a lease that can run out first
    would let a provider's retry claim the id and forward the event a second time."""
    lease = float(dedup.number("lease", 60.0))
    if upstream.mode == "sync" and lease <= upstream.timeout:
        dedup.fail(f"must be longer than upstream.timeout ({upstream.timeout:g}s)", lease, "lease")
    return lease


def _interpolate(root: Reader, env: Mapping[str, str]) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string of the user's file."""

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return _ENV_RE.sub(lambda m: _env(m, env, root.file, path), value)
        return value

    return walk(copy.deepcopy(root.value), "")


def _env(match: re.Match[str], env: Mapping[str, str], file: str, path: str) -> str:
    name, default = match.group(1), match.group(2)
    value = env.get(name)
    if value:
        return value
    if default is not None:
        return default
    raise ConfigError(file, path, f"environment variable {name} is not set")


def _upstream(r: Reader) -> UpstreamSettings:
    r.mapping(("url", "mode", "connect_timeout", "timeout", "retries", "headers", "queue"))
    url = r.text("url")
    if not url.startswith(("http://", "https://")):
        r.fail("must start with http:// or https://", url, "url")
    raw_headers = r.sub("headers").mapping()
    for key, value in raw_headers.items():
        if not isinstance(value, str | int) or isinstance(value, bool):  # `X: ` in YAML is None, not ""
            r.fail("must be a string", value, f"headers.{key}")
        if any(c in f"{key}{value}" for c in "\r\n\0"):  # aiohttp would refuse it on every request
            r.fail("header names and values may not hold line breaks", key=f"headers.{key}")
    headers = {str(k): str(v) for k, v in raw_headers.items()}
    return UpstreamSettings(
        url=url,
        mode=r.text("mode", "sync", ("sync", "queue")),
        connect_timeout=float(r.number("connect_timeout", 2.0)),
        timeout=float(r.number("timeout", 10.0)),
        retries=r.integer("retries", 1, minimum=0),
        headers=headers,
        queue=_queue(r.sub("queue")),
    )


def _queue(r: Reader) -> QueueSettings:
    r.mapping(("concurrency", "batch", "max_attempts", "backoff_base", "backoff_max", "poll_interval", "lease"))
    return QueueSettings(
        concurrency=r.integer("concurrency", 16),
        batch=r.integer("batch", 64),
        max_attempts=r.integer("max_attempts", 12),
        backoff_base=float(r.number("backoff_base", 1.0)),
        backoff_max=float(r.number("backoff_max", 3600.0)),
        poll_interval=float(r.number("poll_interval", 0.5)),
        lease=float(r.number("lease", 60.0)),
    )


def _events(r: Reader) -> EventsSettings:
    r.mapping(("url", "max_memory_events", "migrate_on_start", "retention_days", "pool_size", "timeout"))
    url = r.text("url", "memory://")
    if not url.startswith(EVENT_SCHEMES):
        r.fail(f"unsupported event store; supported: {', '.join(EVENT_SCHEMES)}", mask_url(url), "url")
    return EventsSettings(
        url=url,
        max_memory_events=r.integer("max_memory_events", 10_000),
        migrate_on_start=r.boolean("migrate_on_start", True),
        retention_days=float(r.number("retention_days", 30.0)),
        pool_size=r.integer("pool_size", 10),
        timeout=float(r.number("timeout", 5.0)),
    )


def _providers(r: Reader, catalog: dict[str, Any], defaults: dict[str, Any]) -> dict[str, ProviderSpec]:
    entries = r.mapping()
    if not entries:
        r.fail("configure at least one provider")
    specs = {}
    for name, entry in r.items():
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
        secrets = _secrets(entry.sub("secrets"))
        specs[name] = parse_provider(name, Reader(r.file, merged, entry.path), secrets, defaults)
    return specs


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` laid over it, mappings merged key by key (presets, overrides)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _secrets(r: Reader) -> tuple[Secret, ...]:
    # SECURITY: `secrets: whsec_...` (a string, not a list) is a likely slip; the error must not
    # echo the value, as Reader.elements would.
    if r.value is not None and not isinstance(r.value, list):
        r.fail("must be a list (the value is not shown: it may be a secret)")
    return tuple(_secret(item) for item in r.elements())


def _secret(r: Reader) -> Secret:
    """A literal, ``${ENV}`` (already interpolated) or ``file:/path`` (a Kubernetes Secret mount)."""
    value = r.value
    if not isinstance(value, str) or not value:
        r.fail("must be a non-empty string (a literal, ${ENV_VAR} or file:/path)")
    if value.startswith("file:"):
        path = value[len("file:") :]
        try:
            content = Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            r.fail(f"cannot read secret file: {exc.strerror}", path)
        if not content:
            r.fail("secret file is empty", path)
        return Secret(content, f"file:{path}")
    return Secret(value.encode(), f"#{r.path.rsplit('[', 1)[-1].rstrip(']')}")


def _limit(r: Reader, key: str, default: dict[str, Any]) -> Any:
    value = r.value.get(key, default) if isinstance(r.value, dict) else default
    if value is False or value is None:
        return None
    return parse_rate(Reader(r.file, value, f"{r.path}.{key}"))


def _state(r: Reader) -> StateSettings:
    r.mapping(("url", "key_prefix", "timeout", "on_error"))
    url = r.text("url", "memory://")
    if not url.startswith(STORE_SCHEMES):
        r.fail(f"unsupported store; supported: {', '.join(STORE_SCHEMES)}", mask_url(url), "url")
    policy = r.sub("on_error")
    policy.mapping(("dedup", "rate_limit"))
    return StateSettings(
        url=url,
        key_prefix=_raw_prefix(r),
        timeout=float(r.number("timeout", 0.5)),
        dedup_on_error=policy.text("dedup", "closed", ("open", "closed")),
        rate_limit_on_error=policy.text("rate_limit", "open", ("open", "closed")),
    )


def _raw_prefix(r: Reader) -> str:
    value = r.value.get("key_prefix", "whgw:") if isinstance(r.value, dict) else "whgw:"
    if not isinstance(value, str):
        r.fail("must be a string", value, "key_prefix")
    return value


def _api_keys(r: Reader) -> tuple[Secret, ...]:
    r.mapping(("api_keys",))
    return _secrets(r.sub("api_keys"))


def _logging(r: Reader) -> str:
    r.mapping(("level",))
    level: str = r.text("level", "info", ("debug", "info", "warning", "error"))
    return level


OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _tracing(r: Reader) -> TracingSettings:
    r.mapping(("enabled", "exporter", "endpoint", "service_name"))
    enabled = r.boolean("enabled", False)
    exporter = r.text("exporter", "console", ("console", "otlp"))
    if enabled and exporter == "otlp" and not _importable(OTLP_MODULE):
        r.fail("otlp needs the optional exporter: pip install 'webhook-gateway[otlp]'", exporter, "exporter")
    return TracingSettings(
        enabled=enabled,
        exporter=exporter,
        endpoint=r.text("endpoint", ""),
        service_name=r.text("service_name", "webhook-gateway"),
    )


def _passthrough(r: Reader, upstream: UpstreamSettings) -> PassthroughSettings:
    r.mapping(("enabled", "url", "timeout"))
    parts = urlsplit(upstream.url)
    url = str(r.text("url", f"{parts.scheme}://{parts.netloc}")).rstrip("/")
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.netloc or split.path or split.query:
        r.fail("must be an origin: http(s)://host:port, without a path", url, "url")
    return PassthroughSettings(
        enabled=r.boolean("enabled", False), url=url, timeout=float(r.number("timeout", 60.0))
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _shutdown(r: Reader) -> dict[str, float]:
    r.mapping(("drain_delay", "timeout"))
    return {
        "drain_delay": float(r.number("drain_delay", 0.0, positive=False)),
        "shutdown_timeout": float(r.number("timeout", 25.0)),
    }
