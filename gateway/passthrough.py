"""Passthrough: the sidecar as the pod's front door (``passthrough.enabled``, off by default).

A request that is not for the gateway (webhooks, management API, admin, operations) goes to the
app's own port unchanged: method, path, query, headers (Host too) and body, streamed both ways
with no size limit of the gateway's, plus ``X-Forwarded-For/-Proto/-Host``. So a Service can
target the sidecar and the app's other routes (``/payments/api/payments/``...) keep working.

It is the router's last route, so the webhook path never reaches it and pays nothing for it.
Hop-by-hop headers (RFC 9110 section 7.6.1) are not forwarded in either direction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from yarl import URL

from gateway import routes
from gateway.addresses import Network, in_networks, parse_ip
from gateway.errors import Rejection
from gateway.responses import error_response
from gateway.settings.model import PassthroughSettings

log = logging.getLogger("gateway.passthrough")
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
     "te", "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
# The gateway's own paths: answered by the gateway (a 404 or 405 there is the gateway's), never proxied.
OWN_PREFIXES = (routes.API + "/", routes.ADMIN + "/")
OWN_PATHS = frozenset({routes.API, routes.ADMIN, routes.HEALTHZ, routes.READYZ, routes.METRICS, routes.OPENAPI})
SESSION = web.AppKey("passthrough_session", aiohttp.ClientSession)
CHUNK = 64 * 1024


def is_own(path: str) -> bool:
    return path in OWN_PATHS or path.startswith(OWN_PREFIXES)


def lifecycle(settings: PassthroughSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that owns the one client session of the passthrough."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=settings.timeout)
        # auto_decompress off: the body goes on byte for byte, Content-Encoding and all.
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        app[SESSION] = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=False, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        )
        yield
        await app[SESSION].close()

    return ctx


def handler(
    origin: str,
    trusted: Callable[[], tuple[Network, ...]],
    fallback: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The catch-all route: the gateway's own paths go to ``fallback`` (its JSON 404/405).
    ``origin``: the app's; ``trusted``: the proxies whose X-Forwarded-Proto/-Host are passed on,
    as the config says now (they apply to the next request after a reload, as for webhooks)."""

    async def proxy(request: web.Request) -> web.StreamResponse:
        if is_own(request.path):
            return await fallback(request)
        try:
            return await _relay(request, origin, trusted())
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("passthrough failed", extra={"path": request.path, "error": type(exc).__name__})
            if isinstance(exc, TimeoutError):
                return error_response(Rejection("upstream_timeout", "the app did not answer in time"))
            return error_response(Rejection("upstream_unavailable", "the app is not reachable"))

    return proxy


async def _relay(request: web.Request, origin: str, trusted: tuple[Network, ...]) -> web.StreamResponse:
    session = request.app[SESSION]
    body = request.content if request.body_exists else None
    async with session.request(
        request.method,
        URL(origin + request.rel_url.raw_path_qs, encoded=True),  # as sent: no requoting
        headers=forwarded_headers(request, trusted),
        data=body,
        allow_redirects=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        if upstream.headers.get("Content-Length") is None and request.method != "HEAD":
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:  # the answer has begun: cut it off visibly
            log.warning("passthrough cut off mid-answer", extra={"path": request.path, "error": type(exc).__name__})
            if request.transport is not None:  # no clean end: the client must not take it as whole
                request.transport.close()
            return response
        await response.write_eof()
        return response


def forwarded_headers(request: web.Request, trusted: tuple[Network, ...]) -> list[tuple[str, str]]:
    """The request's headers less hop-by-hop ones, with X-Forwarded-* appended or set.

    X-Forwarded-For gets the peer appended (the app takes the rightmost hop it does not trust);
    X-Forwarded-Proto and -Host are passed on only from a trusted proxy, else set from this request.
    """
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    drop = HOP_BY_HOP | connection | {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
    out = [(k, v) for k, v in request.headers.items() if k.lower() not in drop]
    peer = request.remote or ""
    address = parse_ip(peer)
    from_proxy = address is not None and in_networks(address, trusted)
    # Every X-Forwarded-For line, in order: a proxy may add its own line rather than extend the
    # client's, and the app trusts hops from the right, so dropping a line would hand it a forged one.
    prior = ", ".join(request.headers.getall("X-Forwarded-For", ()))
    out.append(("X-Forwarded-For", f"{prior}, {peer}" if prior else peer))
    proto = request.headers.get("X-Forwarded-Proto") if from_proxy else None
    host = request.headers.get("X-Forwarded-Host") if from_proxy else None
    out.append(("X-Forwarded-Proto", proto or request.scheme))
    out.append(("X-Forwarded-Host", host or request.host))
    return out
