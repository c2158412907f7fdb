"""A public HTTPS tunnel to the gateway for ``webhook-gateway dev --ngrok``, through pyngrok.

pyngrok (the ``dev`` extra) is imported only when a tunnel is opened. It starts the ngrok agent
(``ngrok start --none --log stdout``), waits for the agent's log lines, then asks the agent's
local API (``http://127.0.0.1:4040``) for an endpoint forwarding to the gateway's port. Every way
this can fail ends in a :class:`TunnelError` whose message is one line naming the cause; the
command prints it and exits 2.

:class:`TunnelState` is the part the rest of the gateway sees (the health API): the public URL,
the region, and whether the agent still lists the endpoint. It holds no token.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pyngrok.conf import PyngrokConfig

TOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"  # noqa: S105 (a web page)
_CODE = re.compile(r"ERR_NGROK_\d+")
AUTH_ERRORS = ("ERR_NGROK_4018", "ERR_NGROK_105")  # no (or an unverified) token; a malformed token


class TunnelError(Exception):
    """The tunnel could not start; ``str()`` is one line naming the cause."""


@dataclass(frozen=True, slots=True)
class TunnelOptions:
    port: int
    host: str = "127.0.0.1"
    authtoken: str | None = field(default=None, repr=False)
    domain: str | None = None
    region: str | None = None
    ngrok_path: str | None = None


@dataclass(frozen=True, slots=True)
class TunnelState:
    """Where the tunnel is. ``region`` is the one asked for (None: ngrok picked the nearest)."""

    public_url: str
    region: str | None
    forwards_to: str
    api_url: str  # the ngrok agent's local API

    async def up(self) -> bool:
        """Whether the agent answers (within a second) and still lists this tunnel's public URL."""
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
                for path in ("/api/endpoints", "/api/tunnels"):  # agent config v3, then v2
                    async with session.get(self.api_url + path) as resp:
                        if resp.status == 200:
                            listed = await resp.json()
                            return self.public_url in _urls(listed)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return False
        return False

    async def describe(self) -> dict[str, Any]:
        """The health API's ``tunnel`` object."""
        return {
            "provider": "ngrok",
            "public_url": self.public_url,
            "region": self.region,
            "forwards_to": self.forwards_to,
            "up": await self.up(),
        }


def _urls(listed: Any) -> set[str]:
    items = (listed.get("endpoints") or listed.get("tunnels") or []) if isinstance(listed, dict) else []
    return {str(i.get("url") or i.get("public_url")) for i in items if isinstance(i, dict)}


def find_authtoken(explicit: str | None, env: dict[str, str] | os._Environ[str], config_path: str) -> str | None:
    """The token ngrok will use: ``--authtoken``, ``NGROK_AUTHTOKEN``, then ngrok's config file."""
    if explicit or env.get("NGROK_AUTHTOKEN"):
        return explicit or env["NGROK_AUTHTOKEN"]
    try:
        with open(config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    agent = config.get("agent")  # config version 3; version 2 keeps it at the top
    token = agent.get("authtoken") if isinstance(agent, dict) else None
    token = token or config.get("authtoken")
    return token if isinstance(token, str) and token else None


class Tunnel:
    """An open tunnel; :meth:`close` ends it and the ngrok agent."""

    def __init__(self, state: TunnelState, config: PyngrokConfig) -> None:
        self.state = state
        self._config = config

    def close(self) -> None:
        from pyngrok import ngrok
        from pyngrok.exception import PyngrokError

        with contextlib.suppress(PyngrokError, OSError):  # the agent is being killed anyway
            ngrok.disconnect(self.state.public_url, pyngrok_config=self._config)
        ngrok.kill(pyngrok_config=self._config)


def pyngrok_config(options: TunnelOptions) -> PyngrokConfig:
    """pyngrok's settings: ``--ngrok-path``, else ``PYNGROK_NGROK_PATH``, else an ``ngrok`` on
    PATH, else pyngrok's own copy (downloaded on first use)."""
    try:
        from pyngrok.conf import PyngrokConfig
    except ImportError:
        raise TunnelError("pyngrok is not installed: pip install 'webhook-gateway[dev]'") from None
    path = options.ngrok_path or os.environ.get("PYNGROK_NGROK_PATH") or _installed_ngrok()
    if options.ngrok_path and not (os.path.isfile(path or "") and os.access(path or "", os.X_OK)):
        raise TunnelError(f"--ngrok-path {options.ngrok_path}: no executable ngrok there")
    return PyngrokConfig(ngrok_path=path, auth_token=options.authtoken, region=options.region)


def _installed_ngrok() -> str | None:
    """An ngrok binary on PATH; not pyngrok's own ``ngrok`` console script (a Python script that
    would download ngrok and run it), which sits on PATH in an activated virtualenv."""
    found = shutil.which("ngrok")
    try:
        with open(found or "", "rb") as f:
            return found if f.read(2) != b"#!" else None
    except OSError:
        return None


def open_tunnel(options: TunnelOptions, config: PyngrokConfig) -> Tunnel:
    """Start the agent and an HTTPS endpoint to ``options.host:port``; raises :class:`TunnelError`."""
    from pyngrok import ngrok
    from pyngrok.exception import PyngrokError

    # A gateway listening on every interface is reached by the agent on loopback.
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}  # noqa: S104
    host = wildcard.get(options.host) or (f"[{options.host}]" if ":" in options.host else options.host)
    target = f"http://{host}:{options.port}"
    extra = {"url": f"https://{options.domain}"} if options.domain else {}
    try:
        tunnel = ngrok.connect(target, "http", pyngrok_config=config, **extra)
    except PyngrokError as exc:
        ngrok.kill(pyngrok_config=config)
        raise TunnelError(describe_failure(exc, config.ngrok_path, options.domain)) from None
    except OSError as exc:  # the binary exists but cannot run (wrong architecture, permissions)
        raise TunnelError(f"cannot run ngrok at {config.ngrok_path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:  # pyngrok reads ngrok's config file for tunnel definitions
        raise TunnelError(f"ngrok's config file is not valid YAML: {_first_line(str(exc))}") from None
    except BaseException:  # Ctrl+C while the agent starts: no agent left behind
        ngrok.kill(pyngrok_config=config)
        raise
    assert tunnel.public_url is not None and tunnel.api_url is not None  # pyngrok checks both
    return Tunnel(TunnelState(tunnel.public_url, options.region, target, tunnel.api_url), config)


def describe_failure(exc: Exception, ngrok_path: str, domain: str | None) -> str:
    """One line naming why pyngrok could not open the tunnel."""
    from pyngrok.exception import PyngrokNgrokError, PyngrokNgrokHTTPError, PyngrokNgrokInstallError

    if isinstance(exc, PyngrokNgrokInstallError):
        return (
            f"no ngrok binary at {ngrok_path} and it could not be downloaded ({_first_line(str(exc))}); "
            "install ngrok (https://ngrok.com/download) and pass --ngrok-path"
        )
    if isinstance(exc, PyngrokNgrokHTTPError):
        err = _agent_error(exc.body)
        code = _code(err)
        what = f"the domain {domain}" if domain else "the tunnel"
        return f"ngrok refused {what}: {_first_line(err)}{f' ({code})' if code else ''}"
    if isinstance(exc, PyngrokNgrokError) and exc.ngrok_error:
        code = exc.ngrok_error_code or _code(exc.ngrok_error)
        if code in AUTH_ERRORS:
            return (
                f"ngrok rejected the auth token ({code}): {_first_line(exc.ngrok_error)} "
                f"Check NGROK_AUTHTOKEN, --authtoken or `ngrok config add-authtoken`; your token: {TOKEN_URL}"
            )
        return f"ngrok failed to start: {_first_line(exc.ngrok_error)}{f' ({code})' if code else ''}"
    return f"ngrok failed to start: {_first_line(str(exc))}"


def _agent_error(body: str) -> str:
    """The agent API's error text: ``details.err``, else ``msg``, else the body."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if isinstance(doc, dict):
        details = doc.get("details")
        err = details.get("err") if isinstance(details, dict) else None
        return str(err or doc.get("msg") or body)
    return body


def _code(text: str) -> str:
    found = _CODE.search(text)
    return found.group(0) if found else ""


def _first_line(text: str) -> str:
    """ngrok's messages span lines (escaped as ``\\n`` in its log): keep the first, one line."""
    text = text.replace("\\r", "\n").replace("\\n", "\n").strip()
    first = next((line for line in text.splitlines() if line.strip()), "")
    first = " ".join(first.split())
    return first if len(first) <= 200 else first[:199] + "…"
