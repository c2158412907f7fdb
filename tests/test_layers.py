"""The import graph has no upward arrow: each module imports only its own layer and those below.

The layers, lowest first (``docs/architecture.md`` explains them):

0. foundation: errors, outcomes, routes, responses, secrets, JSON, redaction, stats, logs, and the
   protocol clients (``gateway/protocols/``). They know nothing of webhooks' configuration.
1. providers: specs, the parser of provider YAML, the verifier, the signing schemes.
2. storage: the dedup/rate-limit stores and the event stores, opened from a URL and options.
3. settings: the config loader, which checks URLs against the storage registries.
4. services: the long-lived parts built from settings (metrics, tracing, forwarder, delivery).
5. pipeline: the stages and their runner.
6. surface: the aiohttp app, handlers, server, CLI and commands, and the ``dashboard/`` package,
   which must not reach into the pipeline (it reads service interfaces only).

Every import counts, at module level or inside a function (a lazy import is still a dependency),
``TYPE_CHECKING`` ones included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "dashboard")

#: module (or package prefix) -> layer; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "gateway": 0,  # the package itself: __version__
    "gateway.errors": 0,
    "gateway.addresses": 0,  # client addresses behind trusted proxies (pipeline, dashboard)
    "gateway.outcomes": 0,
    "gateway.routes": 0,
    "gateway.responses": 0,
    "gateway.secrets": 0,
    "gateway.jsonutil": 0,
    "gateway.redact": 0,
    "gateway.escape": 0,
    "gateway.observe": 0,  # the live feed of answered webhooks (dev, dashboard)
    "gateway.tunnel": 0,
    "gateway.stats": 0,
    "gateway.logs": 0,
    "gateway.protocols": 0,
    "gateway.reader": 0,  # the typed YAML reader providers and settings both use
    "gateway.declare": 0,  # config declared once (setting/section) and its generic reader
    "gateway.providers": 1,
    "gateway.stores": 2,
    "gateway.events": 2,
    "gateway.settings": 3,
    "gateway.metrics": 4,
    "gateway.tracing": 4,
    "gateway.forwarder": 4,
    "gateway.delivery": 4,
    "gateway.app_state": 4,
    "gateway.replay": 4,  # replay and dead-letter actions the management API and the dashboard share
    "gateway.pipeline": 5,
    "gateway.handlers": 6,
    "gateway.app": 6,
    "gateway.passthrough": 6,  # the catch-all route of app (passthrough.enabled)
    "gateway.reload": 6,
    "gateway.server": 6,
    "gateway.connections": 6,  # the server's connection limits: head deadline, connection cap
    "gateway.lean": 6,  # the lean server path for webhooks (its protocol, request and runner)
    "gateway.workers": 6,
    "gateway.demo": 6,
    "gateway.cli": 6,
    "gateway.dev": 6,
    "gateway.commands": 6,
    "gateway.__main__": 6,
    "dashboard": 6,
}
NAMES = ("foundation", "providers", "storage", "settings", "services", "pipeline", "surface")
#: Packages that may not import a prefix although its layer is lower: the dashboard reads the
#: services the management API reads; the webhook pipeline and the delivery path are not its business.
FORBIDDEN = {"dashboard": ("gateway.pipeline", "gateway.delivery", "gateway.forwarder")}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        found = LAYERS.get(".".join(parts[:n]))
        if found is not None and (n > 1 or module == parts[0] or parts[0] != "gateway"):
            return found
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import of our packages in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from gateway.pipeline import dedup`` imports the module gateway.pipeline.dedup
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if is_module(f"{base}.{a.name}")]
            found.append((node.lineno, base))
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Why ``module`` (with this ``source``) breaks the layering: one line per bad import."""
    own = layer_of(module)
    if own is None:
        return [f"{module}: not assigned to a layer (add it to LAYERS in tests/test_layers.py)"]
    out = []
    for line, target in imports(source, module, is_package):
        theirs = layer_of(target)
        if theirs is None and target.split(".")[0] == "gateway" and target.count(".") == 1:
            out.append(f"{module}:{line}: imports {target}, which is in no layer")
        elif theirs is not None and theirs > own:
            out.append(f"{module}:{line}: {NAMES[own]} imports {target} ({NAMES[theirs]}), a layer above")
        bad = [p for p in FORBIDDEN.get(module.split(".")[0], ()) if target == p or target.startswith(p + ".")]
        if bad:
            out.append(f"{module}:{line}: imports {target}; {module.split('.')[0]} may not use {bad[0]}")
    return out


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def test_no_module_imports_a_layer_above_its_own() -> None:
    problems = []
    for path in sources():
        problems += violations(path.read_text("utf-8"), module_name(path), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_every_layer_holds_a_module() -> None:
    """A layer map that matches nothing would let anything pass: each entry names real code."""
    modules = {module_name(p) for p in sources()}
    for prefix in LAYERS:
        if prefix == "dashboard" and not (ROOT / "dashboard").is_dir():
            continue
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("gateway.events.record", "from gateway.pipeline.context import RequestContext", "a layer above"),
        ("gateway.stores", "from gateway.settings.model import StateSettings", "a layer above"),
        ("gateway.providers.keys", "def f():\n    from gateway.app import build_app", "a layer above"),
        ("gateway.protocols.http1", "import gateway.metrics", "a layer above"),
        ("gateway.stores.redis", "from ..pipeline import dedup", "a layer above"),
        ("gateway.fresh", "import os", "not assigned to a layer"),
        ("dashboard.views", "from gateway.pipeline.runner import PIPELINE", "may not use gateway.pipeline"),
    ],
)
def test_the_checker_catches_upward_imports(module: str, source: str, expected: str) -> None:
    """Positive controls: the arrows issue 12 found, and others, are reported."""
    found = violations(source, module)
    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("gateway.pipeline.record", "from gateway.events.base import EventRecord"),
        ("gateway.settings.loader", "from gateway.stores import STORES"),
        ("gateway.providers.parse", "from gateway.reader import Reader"),
        ("gateway.providers.entry", "from gateway.declare.fields import setting"),
        ("dashboard.views", "from gateway.app_state import Services"),
    ],
)
def test_downward_imports_pass(module: str, source: str) -> None:
    assert violations(source, module) == []
