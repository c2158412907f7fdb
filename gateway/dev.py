"""``webhook-gateway dev``: the gateway for local development, like ``stripe listen``.

It serves the real gateway (the demo config and demo upstream without ``--config``), optionally
behind a public HTTPS ngrok tunnel whose URL becomes ``public_url`` for the life of the process
(signed URLs, the API's webhook URLs; a config reload keeps it). It prints a banner with each
provider's webhook URL, then one line per webhook as it is answered, read from the pipeline's
live feed (``gateway/observe.py``); ``--json`` prints the CloudEvents instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TextIO

from gateway.outcomes import ACCEPTED, Outcome
from gateway.providers.spec import ProviderSpec
from gateway.secrets import mask_url
from gateway.settings.model import Settings
from gateway.tunnel import TOKEN_URL, Tunnel, TunnelError, TunnelOptions, TunnelState, find_authtoken

if TYPE_CHECKING:
    from gateway.app_state import Services
    from gateway.observe import Observed, Subscription

EXIT_USAGE = 2
LOOPBACK = ("http://127.", "http://localhost", "http://[::1]")
AGENT = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))  # the ngrok agent's side


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ngrok", action="store_true", help="open a public HTTPS tunnel with ngrok (pyngrok)")
    p.add_argument("--domain", help="the ngrok domain to use (a reserved or free static domain)")
    p.add_argument("--region", help="the ngrok region (default: the nearest)")
    p.add_argument("--authtoken", help="ngrok auth token (default: NGROK_AUTHTOKEN, then ngrok's config file)")
    p.add_argument("--ngrok-path", help="an installed ngrok binary (default: ngrok on PATH, else pyngrok's)")
    p.add_argument("--forward-to", metavar="URL", help="send events here instead of upstream.url")
    p.add_argument("--json", action="store_true", help="print each accepted CloudEvent as a JSON line")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port; the tunnel is opened once")


def dev(settings: Settings, args: argparse.Namespace) -> int:
    """The ``dev`` command: returns the exit status (2 for bad options or a tunnel that cannot start)."""
    from gateway.cli import serve

    problem = _bad_options(args)
    if problem:
        return _fail(problem)
    if args.forward_to is not None:
        settings = dataclasses.replace(settings, upstream=dataclasses.replace(settings.upstream, url=args.forward_to))
    tunnel = None
    if args.ngrok and settings.port == 0:  # the tunnel is opened before the server picks a port
        return _fail("--ngrok needs a fixed listen.port (0 means any free port, known only once listening)")
    if args.ngrok:
        try:
            tunnel = _open(settings, args)
        except TunnelError as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:  # Ctrl+C while ngrok starts (open_tunnel stopped the agent)
            return 130
        if tunnel is None:
            return EXIT_USAGE
    overlay = through_tunnel(tunnel.state.public_url) if tunnel is not None else None
    settings = overlay(settings) if overlay is not None else settings
    demo = args.config is None and args.forward_to is None
    watch = Watch(settings, tunnel.state if tunnel else None, args.json, demo, overlay)
    try:
        return serve(settings, args.workers, demo, attach=watch.attach, log_level="warning", log_stream=sys.stderr)
    finally:
        if tunnel is not None:
            tunnel.close()


def _bad_options(args: argparse.Namespace) -> str:
    if args.workers < 1:
        return "--workers must be >= 1"
    if not args.ngrok and (args.domain or args.region or args.authtoken or args.ngrok_path):
        return "--domain, --region, --authtoken and --ngrok-path need --ngrok"
    if args.forward_to is not None and not args.forward_to.startswith(("http://", "https://")):
        return f"--forward-to must start with http:// or https://, got {args.forward_to!r}"
    return ""


def through_tunnel(public_url: str) -> Callable[[Settings], Settings]:
    """What the tunnel changes in any config (at start and on each reload): ``public_url`` is the
    tunnel's, and the local ngrok agent is a trusted proxy, so its ``X-Forwarded-For`` (the
    provider's address) is what ``ip_allowlist`` and the per-source rate limit see."""

    def overlay(settings: Settings) -> Settings:
        trusted = settings.trusted_proxies + tuple(n for n in AGENT if n not in settings.trusted_proxies)
        return dataclasses.replace(settings, public_url=public_url, trusted_proxies=trusted)

    return overlay


def _fail(message: str) -> int:
    print(f"webhook-gateway: {message}", file=sys.stderr)
    return EXIT_USAGE


def _open(settings: Settings, args: argparse.Namespace) -> Tunnel | None:
    """The tunnel, or None after explaining that no auth token was found."""
    import os

    from gateway.tunnel import open_tunnel, pyngrok_config

    options = TunnelOptions(settings.port, settings.host, args.authtoken, args.domain, args.region, args.ngrok_path)
    config = pyngrok_config(options)  # a TunnelError when pyngrok is not installed
    from pyngrok import conf

    config_path = conf.get_config_path(config)
    if find_authtoken(args.authtoken, os.environ, config_path) is None:
        print(no_token_help(settings, config_path), file=sys.stderr)
        return None
    if not os.path.exists(config.ngrok_path):
        from pyngrok import installer

        installer._print_progress_enabled = False  # its progress, unterminated, on stdout: ours instead
        print(f"webhook-gateway: downloading ngrok to {config.ngrok_path} (first use) ...", file=sys.stderr)
    quiet = logging.getLogger("pyngrok")
    quiet.setLevel(logging.CRITICAL + 1)  # a failure is reported in one line, not as ngrok's log lines
    try:
        return open_tunnel(options, config)
    finally:
        quiet.setLevel(logging.NOTSET)


def no_token_help(settings: Settings, config_path: str) -> str:
    """What to do without an ngrok auth token, and how to run local-only instead."""
    return f"""webhook-gateway: --ngrok needs an ngrok auth token, and none was found
  (looked at --authtoken, NGROK_AUTHTOKEN and {config_path}).

  1. Sign up at ngrok (free) and copy your auth token: {TOKEN_URL}
  2. Give it to the gateway, one of:
       export NGROK_AUTHTOKEN=<token>
       ngrok config add-authtoken <token>          (saves it in ngrok's config file)
       webhook-gateway dev --ngrok --authtoken <token>
  3. Run again: webhook-gateway dev --ngrok

  Or run local-only, without a tunnel: webhook-gateway dev
  (webhooks at {settings.webhook_url("<provider>")}; try `webhook-gateway send stripe`)"""


class Watch:
    """The banner and the per-event lines, in every serving process (banner: the primary only)."""

    def __init__(
        self,
        settings: Settings,
        tunnel: TunnelState | None,
        as_json: bool,
        demo: bool,
        overlay: Callable[[Settings], Settings] | None = None,
    ) -> None:
        self.settings, self.tunnel, self.as_json, self.demo = settings, tunnel, as_json, demo
        self.overlay = overlay
        self.out: TextIO = sys.stdout
        self.info: TextIO = sys.stderr if as_json else sys.stdout  # stdout stays pure JSON lines

    def attach(self, services: Services, primary: bool) -> Coroutine[Any, Any, None]:
        """``server.Attach``: subscribe now (no answer missed), print from the returned coroutine."""
        services.tunnel = self.tunnel
        services.overlay = self.overlay
        return self._run(services.feed.subscribe(maxsize=10_000), primary)

    async def _run(self, feed: Subscription, primary: bool) -> None:
        if primary:
            print(banner(self.settings, self.tunnel, self.demo), file=self.info, flush=True)
        shown_dropped = 0
        with feed:
            async for seen in feed:
                self._show(seen)
                if feed.dropped > shown_dropped:
                    print(f"({feed.dropped - shown_dropped} events not shown: output too slow)", file=self.info)
                    shown_dropped = feed.dropped

    def _show(self, seen: Observed) -> None:
        if self.as_json and seen.event:
            self.out.write(seen.event.decode("utf-8", "replace") + "\n")
            self.out.flush()
        else:
            print(event_line(seen), file=self.info, flush=True)


def event_line(seen: Observed) -> str:
    """``12:00:01  stripe  payment_intent.succeeded  evt_1  verified  upstream 204  3.1 ms``."""
    clock = time.strftime("%H:%M:%S", time.localtime(seen.at))
    head = f"{clock}  {seen.provider:<18} {seen.event_type or '-':<30} {seen.event_id or '-':<24}"
    return f"{head} {_outcome(seen)}  {seen.latency_ms:.1f} ms"


def _outcome(seen: Observed) -> str:
    if seen.outcome in ACCEPTED:
        checked = {True: "verified", False: "UNVERIFIED (shadow mode)", None: "unsigned"}[seen.verified]
        sent = f"upstream {seen.upstream_status}" if seen.upstream_status else "queued for delivery"
        return f"{checked}  {sent}"
    if seen.outcome in (Outcome.DUPLICATE, Outcome.HANDSHAKE):
        return f"{seen.outcome} ({seen.status})"
    return f"rejected {seen.outcome} ({seen.status}): {seen.reason}"


def banner(settings: Settings, tunnel: TunnelState | None, demo: bool) -> str:
    """Where to point each provider, whether its secret is set (never the secret itself)."""
    public = settings.public_url
    upstream = mask_url(settings.upstream.url) + ("  (the demo upstream: answers 204)" if demo else "")
    lines = ["", f"  webhook-gateway dev: listening on http://{settings.host}:{settings.port}"]
    if tunnel is not None:
        region = tunnel.region or "nearest"
        lines.append(f"  Tunnel:    {tunnel.public_url} -> {tunnel.forwards_to}  (ngrok, region {region})")
        lines.append("  Public:    everything on this port, through the tunnel (the management API asks for its key)")
        if settings.file.startswith("<"):
            lines.append(
                "  Note:      the demo config's secrets and API key are public: use --config for real webhooks"
            )
    elif public.startswith(LOOPBACK):
        lines.append(f"  Local only: providers cannot reach {public}; add --ngrok for a public HTTPS URL")
    lines += [f"  Upstream:  {upstream}", f"  Dashboard: {public}/payments/admin/", ""]
    lines.append("  Webhook URLs to paste into each provider's dashboard:")
    width = max(len(name) for name in settings.providers)
    url_width = max(len(settings.webhook_url(name)) for name in settings.providers)
    for name, spec in settings.providers.items():
        lines.append(f"    {name:<{width}}  {settings.webhook_url(name):<{url_width}}  {_secret_state(spec)}")
    lines += ["", "  Ready: one line per webhook below (Ctrl+C to stop)", ""]
    return "\n".join(lines)


def _secret_state(spec: ProviderSpec) -> str:
    sig = spec.signature
    if sig is None:
        return "UNSIGNED (allow_unsigned)"
    if sig.secrets:
        return f"secret set ({len(sig.secrets)})"
    if sig.public_keys or sig.certificate_header:
        return "public key"
    return "secret NOT set"
