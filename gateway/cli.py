"""``webhook-gateway run|dev|check|sign|send|migrate``. Config errors print one line and exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from gateway import __version__, routes
from gateway.dev import add_arguments, dev
from gateway.errors import ConfigError
from gateway.providers.signer import sample_event, sign, sign_body
from gateway.providers.spec import ProviderSpec
from gateway.secrets import mask_url
from gateway.settings.loader import load_config
from gateway.settings.model import Settings

if TYPE_CHECKING:
    from gateway.server import Attach

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as exc:  # ConfigErrors: one line per error found in the file
        for line in str(exc).splitlines():
            print(f"webhook-gateway: config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    result: int = args.func(settings, args)
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webhook-gateway", description="Verify, deduplicate and forward webhooks.")
    p.add_argument("--version", action="version", version=f"webhook-gateway {__version__}")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, func: object, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("--config", "-c", help="gateway YAML (default: the embedded demo config)")
        c.set_defaults(func=func)
        return c

    run = command("run", _run, "serve webhooks")
    run.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    add_arguments(command("dev", dev, "serve webhooks for local development: a public ngrok tunnel, a line per event"))
    command("check", _check, "validate a config and list its providers")
    command("migrate", _migrate, "apply the event store's SQL migrations (PostgreSQL)")
    for name, func, text in (
        ("sign", _sign, "print the headers a provider would send"),
        ("send", _send, "sign a sample event and post it"),
    ):
        c = command(name, func, text)
        c.add_argument("provider")
        c.add_argument("--body", help="file with the body to sign (default: the catalog's sample event)")
        c.add_argument("--secret", type=int, default=0, help="which configured secret to sign with (0 = first)")
        c.add_argument("--url", help="gateway base URL (default: public_url from the config)")
    sub.choices["sign"].add_argument("--curl", action="store_true", help="print a curl command instead")
    return p


def _run(settings: Settings, args: argparse.Namespace) -> int:
    return serve(settings, args.workers, demo=args.config is None)


def serve(
    settings: Settings,
    workers: int,
    demo: bool,
    attach: Attach | None = None,
    log_level: str | None = None,
    log_stream: TextIO | None = None,
) -> int:
    """``run`` (and ``dev``, with its ``attach`` and logs at ``log_level`` to ``log_stream``)."""
    if workers < 1:
        print("webhook-gateway: --workers must be >= 1", file=sys.stderr)
        return EXIT_CONFIG
    parent = os.getpid()
    if workers > 1:
        from gateway.workers import prepare_multiprocess_metrics

        metrics_dir = prepare_multiprocess_metrics()  # before prometheus_client is first imported
        if settings.state.url.startswith("memory://"):
            print(
                "webhook-gateway: WARNING: with --workers > 1 and state.url memory://, each worker dedups and "
                "rate-limits on its own; use redis:// to share them",
                file=sys.stderr,
            )
    from gateway import logs, server

    logs.setup(log_level or settings.log_level, log_stream)
    for warning in startup_warnings(settings):
        print(f"webhook-gateway: WARNING: {warning}", file=sys.stderr)
    try:
        return server.run(settings, demo=demo, workers=workers, attach=attach)
    finally:
        if workers > 1 and os.getpid() == parent:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _scheme(spec: ProviderSpec) -> str:
    sig = spec.signature
    assert sig is not None
    where = sig.header or "the body"
    keys = f"{len(sig.secrets)} secret(s) {list(sig.secrets)}"
    if sig.public_keys or sig.public_algorithm:
        keys += f", {len(sig.public_keys)} public key(s) {list(sig.public_keys)}"
        if sig.certificate_header and not sig.public_keys:
            keys += f" (certificate from {sig.certificate_header}: {', '.join(sig.certificate_hosts)})"
    shadow = ", SHADOW mode" if spec.shadow else ""
    return f"{spec.algorithm_label} in {where}, {keys}{shadow}"


def startup_warnings(settings: Settings) -> list[str]:
    """What ``run`` prints before serving: providers that accept what they could not verify."""
    out = []
    for name, spec in settings.providers.items():
        if spec.signature is None:
            out.append(f"provider {name} accepts UNSIGNED webhooks (allow_unsigned: true)")
        elif spec.shadow:
            out.append(
                f"provider {name} is in SHADOW mode: requests that fail verification are forwarded "
                "(data.verified: false); set shadow: false to enforce verification"
            )
    return out


def _check(settings: Settings, args: argparse.Namespace) -> int:
    upstream = settings.upstream
    shown = mask_url(upstream.url)
    print(f"{settings.file}: OK ({len(settings.providers)} providers, upstream {shown}, mode {upstream.mode})")
    for name, spec in settings.providers.items():
        sig = spec.signature
        scheme = _scheme(spec) if sig else "UNSIGNED (allow_unsigned)"
        ts = f", timestamp ±{spec.timestamp.tolerance:g}s" if spec.timestamp else ""
        print(f"  {name:<20} {settings.webhook_url(name)}  {scheme}{ts}")
    for warning in secret_warnings(settings):
        print(f"WARNING: {warning}")
    for line in _rotation(settings):
        print(line)
    return 0


def secret_warnings(settings: Settings) -> list[str]:
    """Secrets shorter than the provider documents (``min_secret_bytes``): guessable, or pasted cut
    short. Only the secret's source and length are shown, never its value."""
    out = []
    for name, spec in settings.providers.items():
        if not spec.signature or not spec.min_secret_bytes:
            continue
        for index, secret in enumerate(spec.signature.secrets):
            size = len(secret.reveal())
            if size < spec.min_secret_bytes:
                out.append(
                    f"providers.{name}.secrets[{index}] ({secret.label}) is {size} bytes; {spec.display_name} "
                    f"documents at least {spec.min_secret_bytes}: generate a new one with the provider"
                )
    return out


def _rotation(settings: Settings) -> list[str]:
    """Keys that can be retired, from the event store's record of which key matched."""
    from datetime import UTC, datetime

    from gateway.commands.rotation import load_usage, report

    keys = [len(s.signature.secrets) + len(s.signature.public_keys) for s in settings.providers.values() if s.signature]
    if max(keys, default=0) < 2:
        return []
    if _is_postgres(settings.events.url):
        usage = asyncio.run(load_usage(settings.events.url, settings.events.timeout))
    else:
        usage = "events.url is not PostgreSQL (see webhook_gateway_signature_secret_matches_total)"
    return report(settings, usage, datetime.now(UTC))


def _is_postgres(url: str) -> bool:
    from gateway.events import EVENT_STORES, postgres

    return EVENT_STORES.backend(url) is postgres.PostgresEventStore


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    if not _is_postgres(settings.events.url):
        print("webhook-gateway: events.url is not PostgreSQL; nothing to migrate", file=sys.stderr)
        return 1
    return asyncio.run(_apply_migrations(settings.events.url))


async def _apply_migrations(dsn: str) -> int:
    import asyncpg

    from gateway.events.postgres import apply_migrations

    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"webhook-gateway: cannot connect to PostgreSQL: {exc}", file=sys.stderr)
        return 1
    try:
        applied = await apply_migrations(pool)
    finally:
        await pool.close()
    print(f"applied: {', '.join(applied)}" if applied else "up to date")
    return 0


def _prepare(settings: Settings, args: argparse.Namespace) -> tuple[str, bytes, dict[str, str]] | None:
    provider = settings.providers.get(args.provider)
    if provider is None:
        print(
            f"webhook-gateway: unknown provider {args.provider!r}; configured: {', '.join(settings.providers)}",
            file=sys.stderr,
        )
        return None
    if provider.signature and provider.signature.secrets and not 0 <= args.secret < len(provider.signature.secrets):
        print(
            f"webhook-gateway: provider {args.provider} has {len(provider.signature.secrets)} secret(s)",
            file=sys.stderr,
        )
        return None
    extra: dict[str, str] = {}
    if args.body:
        body = Path(args.body).read_bytes()
    else:
        body, extra = sample_event(provider)
    base = (args.url or settings.public_url).rstrip("/")
    url = base + routes.webhook_path(args.provider)
    signed_url = settings.webhook_url(args.provider)
    try:
        body = sign_body(provider, body, secret_index=args.secret)
        return url, body, sign(provider, body, signed_url, secret_index=args.secret, headers=extra)
    except ValueError as exc:  # a public-key scheme: only the provider can sign
        print(f"webhook-gateway: cannot sign for {args.provider}: {exc}", file=sys.stderr)
        return None


def _sign(settings: Settings, args: argparse.Namespace) -> int:
    prepared = _prepare(settings, args)
    if prepared is None:
        return 1
    url, body, headers = prepared
    if args.curl:
        parts = ["curl", "-sS", "-X", "POST", url]
        for k, v in headers.items():
            parts += ["-H", f"{k}: {v}"]
        parts += ["--data-binary", body.decode("utf-8", "replace")]
        print(" ".join(shlex.quote(p) for p in parts))
    else:
        for k, v in headers.items():
            print(f"{k}: {v}")
        if not args.body:
            print()
            print(body.decode())
    return 0


def _send(settings: Settings, args: argparse.Namespace) -> int:
    prepared = _prepare(settings, args)
    if prepared is None:
        return 1
    url, body, headers = prepared
    return asyncio.run(_post(url, body, headers))


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(url, data=body, headers=headers) as resp,
        ):
            text = await resp.text()
    except aiohttp.ClientError as exc:
        print(f"webhook-gateway: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        shown = json.dumps(json.loads(text))
    except ValueError:
        shown = text
    print(f"POST {url} -> HTTP {resp.status} {shown}")
    return 0 if resp.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
