"""The staff guard (session + CSRF on every route but login and static files), security headers,
error pages, and the login/logout handlers."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from dashboard.auth import COOKIE
from dashboard.state import DASHBOARD, SESSION, session_of
from dashboard.templating import render
from gateway import routes
from gateway.addresses import client_address
from gateway.errors import Rejection, StoreError
from gateway.responses import check_charset

log = logging.getLogger("gateway.dashboard")
PUBLIC = frozenset({"login", "login_submit", "static"})
# SECURITY: no inline script or style anywhere; htmx and Alpine (its CSP build) are configured
# from static files, so 'unsafe-inline' and 'unsafe-eval' are never needed.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_charset(request)
        response = await _guarded(request, handler)
    except web.HTTPException as exc:  # redirects, and aiohttp's own 404/405
        if exc.status < 400:
            response = redirect(exc.headers.get("Location", _root(request)), exc.status)
        else:
            response = error(request, exc.status, "not_found" if exc.status == 404 else "invalid_request", exc.reason)
    except Rejection as rej:
        response = error(request, rej.status, rej.code, rej.message)
    except StoreError:
        response = error(request, 503, "store_unavailable", "the event store is unavailable; try again shortly")
    except Exception:
        log.exception("dashboard handler failure", extra={"path": request.path})
        response = error(request, 500, "internal_error", "the dashboard failed to answer this request")
    if not response.prepared:  # an SSE stream sent its headers already (set in the handler)
        response.headers.update(HEADERS)
        if request.match_info.route.name != "static":
            response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name in PUBLIC:
        return await handler(request)
    session = request.app[DASHBOARD].sessions.verify(request.cookies.get(COOKIE))
    if session is None:
        return _anonymous(request)
    request[SESSION] = session
    if request.method not in ("GET", "HEAD") and not await _csrf_ok(request):
        return error(request, 403, "csrf_failed", "the form's security token is missing or stale: reload the page")
    return await handler(request)


async def _csrf_ok(request: web.Request) -> bool:
    given = request.headers.get("X-CSRF-Token", "")
    if not given and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = str((await request.post()).get("csrf", ""))
    return request.app[DASHBOARD].sessions.csrf_ok(session_of(request), given)


def _anonymous(request: web.Request) -> web.StreamResponse:
    if request.method == "GET" and not _wants_fragment(request):
        return redirect(str(request.app.router["login"].url_for().with_query(next=request.path_qs)))
    return error(request, 401, "unauthorized", "log in first: the session is missing or has expired")


def _wants_fragment(request: web.Request) -> bool:
    """htmx partials, JSON and streams get a status, not a redirect to a page."""
    path = request.path
    return "HX-Request" in request.headers or any(p in path for p in ("/ajax/", "/partials/", "/stream/"))


def error(request: web.Request, status: int, code: str, message: str) -> web.StreamResponse:
    if "/ajax/" in request.path or "application/json" in request.headers.get("Accept", ""):
        body = {"success": False, "error": {"code": code, "message": message}}
        return web.json_response(body, status=status)
    name = "partials/error.html" if "HX-Request" in request.headers else "error.html"
    context = {"status": status, "code": code, "message": message, "session": request.get(SESSION)}
    return render(name, request, context, status=status)


async def login_form(request: web.Request) -> web.StreamResponse:
    return _login_page(request, None, 200)


def _login_page(request: web.Request, problem: str | None, status: int) -> web.StreamResponse:
    sessions = request.app[DASHBOARD].sessions
    context: dict[str, Any] = {
        "token": sessions.login_token(),
        "next": _safe_next(request.query.get("next", "")),
        "problem": problem,
        "session": None,
    }
    return render("login.html", request, context, status=status)


async def login_submit(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    form = await request.post()
    if not dash.sessions.login_token_ok(str(form.get("token", ""))):
        return _login_page(request, "The login form expired or was not sent from this page: try again.", 403)
    source = _client(request)
    if dash.sessions.throttled(source):
        dash.audit.record(f"anonymous {source}", "login_throttled")
        return _login_page(request, "Too many failed logins from this address: wait a few minutes.", 429)
    who = dash.sessions.authenticate(str(form.get("key", "")))
    if who is None:
        dash.sessions.failed(source)
        dash.audit.record(f"anonymous {source}", "login_failed")
        return _login_page(request, "That key is not valid.", 401)
    token, _ = dash.sessions.issue(who)
    dash.audit.record(who, "login", remote=request.remote)
    response = redirect(_safe_next(str(form.get("next", ""))) or _root(request))
    response.set_cookie(
        COOKIE, token, max_age=int(dash.sessions.ttl), path=_root(request), httponly=True, samesite="Strict",
        secure=_https(request),
    )  # fmt: skip
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    session = session_of(request)
    dash.sessions.revoke(session)
    dash.audit.record(session.who, "logout")
    response = redirect(str(request.app.router["login"].url_for()))
    response.del_cookie(COOKIE, path=_root(request))
    return response


def redirect(location: str, status: int = 303) -> web.Response:
    """A redirect returned, not raised: the guard adds its headers, and cookies set on it stick."""
    return web.Response(status=status, headers={"Location": location})


def _client(request: web.Request) -> str:
    """Who is logging in, as the webhook pipeline would name them: behind a trusted proxy (an
    ingress) the address it forwarded, so one person's bad guesses do not lock out everyone."""
    peer = request.remote or "?"
    trusted = request.app[DASHBOARD].services.settings.trusted_proxies
    try:
        return client_address(peer, request.headers.getall("X-Forwarded-For", ()), trusted)
    except ValueError:  # a hop that is not an address: throttle the proxy's peer address
        return peer


def _root(request: web.Request) -> str:
    return str(request.app.router["overview"].url_for())


def _https(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the scheme arrives in X-Forwarded-Proto. A forged header only
    # makes the cookie stricter (Secure), never weaker.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _safe_next(value: str) -> str:
    """Only a path inside the dashboard: never another origin (``//evil``) or a scheme."""
    ok = value.startswith(routes.ADMIN + "/") and "//" not in value and "\\" not in value
    return value if ok and value.isprintable() else ""
