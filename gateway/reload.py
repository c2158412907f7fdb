"""Config reload without restart: on SIGHUP, and when the config or a secret file changes.

The new file is loaded and checked in full first; if it is invalid the old config keeps serving
and the reason is logged (and counted). Providers, secrets, limits, dedup and proxy settings take
effect for the next request. What needs new connections or sockets (listen, state, events,
upstream, tracing) is kept as it was and logged as "restart needed". The process's overlay
(``Services.overlay``: ``dev --ngrok`` sets ``public_url`` to the tunnel) is applied to the new config too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from aiohttp import web

from gateway.app_state import SERVICES
from gateway.errors import ConfigError
from gateway.pipeline.runner import PIPELINE
from gateway.pipeline.stage import default_stages
from gateway.settings.loader import check_rules, load_config
from gateway.settings.model import Settings

log = logging.getLogger("gateway.reload")
#: Settings read once, by what the process built at start (sockets, connections, the connection
#: limits, the passthrough route, the shutdown sequence): a change waits for a restart, and is
#: logged as such; the running process keeps the old value whole.
RESTART_ONLY = (
    "host", "port", "metrics_port", "header_timeout", "max_connections", "state", "events", "upstream", "tracing",
    "dashboard", "passthrough", "drain_delay", "shutdown_timeout",
)  # fmt: skip


def apply(app: web.Application, new: Settings) -> list[str]:
    """Swap in ``new`` (less what needs a restart); returns the keys that need one."""
    services = app[SERVICES]
    old = services.settings
    pending = [key for key in RESTART_ONLY if getattr(old, key) != getattr(new, key)]
    merged = dataclasses.replace(new, **{key: getattr(old, key) for key in RESTART_ONLY})
    if services.overlay is not None:  # what the process adds to any config (dev's tunnel)
        merged = services.overlay(merged)
    # The new file passed every rule alone; with the kept values it must too (a shorter dedup
    # lease beside the upstream.timeout still in force would let a retry forward twice).
    check_rules(merged)
    services.settings = merged
    try:
        stages = tuple(default_stages(services))
    except BaseException:
        services.settings = old  # all or nothing: the old config keeps serving whole
        raise
    app[PIPELINE].stages = stages
    services.metrics.init_settings(merged)  # new providers' series start at 0 too
    if services.delivery is not None:
        services.delivery.providers = merged.providers
    return pending


def reload(app: web.Application) -> bool:
    services = app[SERVICES]
    path = services.settings.file
    try:
        new = load_config(path)
        pending = apply(app, new)
    except ConfigError as exc:
        services.metrics.config_reloads.labels("error").inc()
        log.error("config reload refused; the previous config keeps serving", extra={"reason": str(exc)})
        return False
    except Exception:  # a bug must not end the watcher: the old config keeps serving, loudly
        services.metrics.config_reloads.labels("error").inc()
        log.exception("config reload failed; the previous config keeps serving")
        return False
    services.metrics.config_reloads.labels("ok").inc()
    log.info("config reloaded", extra={"providers": sorted(new.providers), "restart_needed_for": pending or None})
    return True


def watched_files(settings: Settings) -> list[str]:
    files = [settings.file]
    for spec in settings.providers.values():
        if spec.signature:
            files += [s.label[5:] for s in spec.signature.secrets if s.label.startswith("file:")]
    files += [s.label[5:] for s in settings.api_keys if s.label.startswith("file:")]
    return files


async def watch(app: web.Application, interval: float = 2.0) -> None:
    """Reload when the config file or a ``file:`` secret changes (Kubernetes swaps mounted files)."""
    seen = _stamps(watched_files(app[SERVICES].settings))
    while True:
        await asyncio.sleep(interval)
        now = _stamps(watched_files(app[SERVICES].settings))
        if now != seen:
            reload(app)
            seen = _stamps(watched_files(app[SERVICES].settings))


def _stamps(files: list[str]) -> dict[str, tuple[float, int] | None]:
    out: dict[str, tuple[float, int] | None] = {}
    for f in files:
        try:
            st = os.stat(f)  # follows symlinks: a ConfigMap update swaps the ..data link
            out[f] = (st.st_mtime, st.st_ino)
        except OSError:
            out[f] = None
    return out
