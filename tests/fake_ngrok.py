"""A fake ``ngrok`` agent for pyngrok's real start-up path, on loopback only.

pyngrok runs ``<ngrok_path> start --none --log stdout [--config F] [--authtoken T] [--region R]``,
reads the agent's log lines until it has seen ``starting web service`` (with ``addr=``, the local
API), ``client session established`` and ``tunnel session started`` (pyngrok/process.py), probes
the API, then creates an endpoint with ``POST /api/endpoints`` (``/api/tunnels`` for config v2).

This fake prints those lines and serves that API. An endpoint is a small HTTP proxy on another
loopback port that forwards every request to the endpoint's upstream, the way ngrok's edge does
(adding ``X-Forwarded-For/-Proto/-Host``); its ``url`` (the tunnel's public URL) is that proxy.

``make_fake(directory, mode)`` writes an executable wrapper. Modes: ``ok``; ``authfail`` (the
agent logs ngrok's ERR_NGROK_4018 authentication error and exits 1, as ngrok does without a
valid token). A requested ``url`` whose host starts with ``taken.`` is refused as already online
(ERR_NGROK_334). Each start appends ``{"argv": [...], "pid": N}`` to ``<wrapper>.starts``.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

AUTH_ERROR = (
    "authentication failed: Usage of ngrok requires a verified account and authtoken.\\n\\n"
    "Sign up for an account: https://dashboard.ngrok.com/signup\\n"
    "Install your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken\\r\\n\\r\\nERR_NGROK_4018\\r\\n"
)
TAKEN_ERROR = (
    "failed to start tunnel: The endpoint '{url}' is already online. Either\\n"
    "1. stop your existing endpoint first, or\\n2. start both endpoints with `--pooling-enabled`\\r\\n\\r\\n"
    "ERR_NGROK_334\\r\\n"
)


def make_fake(directory: Path, mode: str = "ok") -> Path:
    path = directory / f"ngrok-{mode}"
    path.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"import fake_ngrok\nfake_ngrok.main({mode!r}, __file__)\n",
        "utf-8",
    )
    path.chmod(0o755)
    return path


def starts(fake: Path) -> list[dict[str, Any]]:
    record = Path(f"{fake}.starts")
    return [json.loads(line) for line in record.read_text("utf-8").splitlines()] if record.exists() else []


def log(msg: str, lvl: str = "info", **fields: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())
    extra = "".join(f" {k}={v}" for k, v in fields.items())
    print(f't={stamp} lvl={lvl} msg="{msg}"{extra}', flush=True)


class Agent:
    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)

    def create(self, options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        wanted = options.get("url")
        if wanted and urlsplit(wanted).hostname.startswith("taken."):  # type: ignore[union-attr]
            err = TAKEN_ERROR.format(url=wanted).replace("\\n", "\n").replace("\\r", "\r")
            return 502, {
                "error_code": 104,
                "status_code": 502,
                "msg": "failed to start tunnel",
                "details": {"err": err},
            }
        upstream = options["upstream"]["url"]
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), proxy_handler(upstream))
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        name = options["name"]
        endpoint = {
            "id": f"ep_{next(self.ids)}",
            "name": name,
            "url": f"http://127.0.0.1:{proxy.server_address[1]}",
            "upstream": {"url": upstream, "protocol": "http1"},
            "uri": f"/api/endpoints/{name}",
        }
        self.endpoints[name] = endpoint
        return 201, endpoint


def api_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Api(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, doc: Any = None) -> None:
            body = json.dumps(doc).encode() if doc is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            listed = list(agent.endpoints.values())
            if self.path == "/api/endpoints":
                self.answer(200, {"endpoints": listed, "uri": "/api/endpoints"})
            elif self.path == "/api/tunnels":
                tunnels = [{"name": e["name"], "public_url": e["url"], "proto": "https"} for e in listed]
                self.answer(200, {"tunnels": tunnels, "uri": "/api/tunnels"})
            else:
                self.answer(404, {"error_code": 100, "status_code": 404, "msg": "not found"})

        def do_POST(self) -> None:
            options = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            status, doc = agent.create(options)
            self.answer(status, doc)

        def do_DELETE(self) -> None:
            agent.endpoints.pop(self.path.rsplit("/", 1)[-1], None)
            self.answer(204)

    return Api


def proxy_handler(upstream: str) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            headers |= {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
            headers["X-Forwarded-Host"] = self.headers.get("Host", "")
            conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=10)
            try:
                conn.request(self.command, self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError:  # ngrok answers 502 (ERR_NGROK_8012) when the upstream is down
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            finally:
                conn.close()
            log("join connections", obj="join", l=f"127.0.0.1:{target.port}", r="203.0.113.7:443")
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "keep-alive", "date", "server"):
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

    return Proxy


def main(mode: str, wrapper: str) -> None:
    argv = sys.argv[1:]
    for sig in (signal.SIGINT, signal.SIGTERM):  # as ngrok: a quiet exit, no traceback
        signal.signal(sig, lambda *_: os._exit(0))
    with open(f"{wrapper}.starts", "a", encoding="utf-8") as record:
        record.write(json.dumps({"argv": argv, "pid": os.getpid()}) + "\n")
    if argv[:2] != ["start", "--none"] or "stdout" not in argv:
        print(f"fake ngrok: unexpected arguments {argv}", file=sys.stderr)
        sys.exit(64)
    agent = Agent()
    api = ThreadingHTTPServer(("127.0.0.1", 0), api_handler(agent))
    log("no configuration paths supplied")
    log("starting web service", obj="web", addr=f"127.0.0.1:{api.server_address[1]}", allow_hosts="[]")
    if mode == "authfail":
        log("failed to reconnect session", lvl="eror", obj="tunnels.session", err=f'"{AUTH_ERROR}"')
        log("session closing", lvl="eror", obj="tunnels.session", err=f'"{AUTH_ERROR}"')
        sys.exit(1)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    log("client session established", obj="tunnels.session")
    log("tunnel session started", obj="tunnels.session")
    threading.Event().wait()  # until killed, as the agent runs
