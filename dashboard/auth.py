"""Staff sessions: a login with a key gives a signed, expiring session cookie; CSRF on every POST.

A session is a signed token, not a server-side row, so every worker process and replica with the
same config accepts it. The signing key is derived from the login keys: rotating a key ends the
sessions signed with the old set. Logout revokes the session id in this process and clears the
cookie (a copied cookie could still be replayed on another replica until it expires: keep
``dashboard.session_ttl`` short where that matters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from gateway.secrets import Secret, same_text

COOKIE = "gw_admin_session"
LOGIN_TOKEN_TTL = 3600.0
MAX_FAILURES = 5  # failed logins per source address and window before logins are refused
FAILURE_WINDOW = 300.0


def fingerprint(secret: Secret) -> str:
    """A short, safe name for a key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret.reveal()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    who: str  # "key 1a2b3c4d": the fingerprint of the key that logged in, never the key
    expires: float


class Sessions:
    def __init__(self, keys: tuple[Secret, ...], ttl: float) -> None:
        self.keys = keys
        self.ttl = ttl
        material = b"\0".join(k.reveal() for k in keys)
        self._key = hashlib.sha256(b"webhook-gateway dashboard session\0" + material).digest()
        self._revoked: dict[str, float] = {}
        self._failures: dict[str, list[float]] = {}

    def throttled(self, source: str, now: float | None = None) -> bool:
        """Too many failed logins from ``source`` lately (per process: a brake on guessing, the
        keys' entropy is the real defence)."""
        now = time.time() if now is None else now
        recent = [t for t in self._failures.get(source, []) if now - t < FAILURE_WINDOW]
        self._failures[source] = recent
        return len(recent) >= MAX_FAILURES

    def failed(self, source: str, now: float | None = None) -> None:
        if len(self._failures) > 10_000:  # bounded: forget the oldest sources
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(source, []).append(time.time() if now is None else now)

    def authenticate(self, given: str) -> str | None:
        """The identity of the key ``given`` matches, or None. Constant time over every key."""
        candidate = given.encode("utf-8", "surrogateescape")
        who = None
        for key in self.keys:
            if hmac.compare_digest(candidate, key.reveal()) and who is None:
                who = f"key {fingerprint(key)}"
        return who

    def issue(self, who: str, now: float | None = None) -> tuple[str, Session]:
        session = Session(secrets.token_urlsafe(16), who, (now or time.time()) + self.ttl)
        payload = _b64(json.dumps({"sid": session.sid, "who": who, "exp": session.expires}).encode())
        return f"{payload}.{self._mac('session', payload)}", session

    def verify(self, token: str | None, now: float | None = None) -> Session | None:
        if not token or token.count(".") != 1 or len(token) > 1024:
            return None
        payload, mac = token.split(".")
        if not same_text(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=="))
            session = Session(str(data["sid"]), str(data["who"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= (now or time.time()) or session.sid in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        now = time.time()
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        self._revoked[session.sid] = session.expires

    def csrf_token(self, session: Session) -> str:
        """The synchronizer token of a session: bound to it, so a token of another session fails."""
        return self._mac("csrf", session.sid)

    def csrf_ok(self, session: Session, given: str) -> bool:
        return bool(given) and same_text(given, self.csrf_token(session))

    def login_token(self, now: float | None = None) -> str:
        """A token for the anonymous login form (login CSRF): signed, valid for an hour."""
        stamp = str(int(now or time.time()))
        return f"{stamp}.{self._mac('login', stamp)}"

    def login_token_ok(self, given: str, now: float | None = None) -> bool:
        stamp, _, mac = given.partition(".")
        # isascii: isdigit() also passes Arabic-Indic and other Unicode digits.
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            return False
        if not same_text(mac, self._mac("login", stamp)):
            return False
        return 0 <= (now or time.time()) - int(stamp) <= LOGIN_TOKEN_TTL

    def _mac(self, purpose: str, value: str) -> str:
        message = f"{purpose}:{value}".encode("utf-8", "surrogateescape")  # a cookie may hold any text
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
