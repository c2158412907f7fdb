"""The paths of the HTTP surface, in one place (the paths come from the seed).

The webhook route and the management API share one prefix, so every name the management API
uses under it is reserved: no provider may be configured under it.
"""

from __future__ import annotations

import re

API = "/payments/api/webhooks"
#: The public webhook route (also matched without the trailing slash).
WEBHOOK = API + "/{provider}/"

# The management API (API key).
PROVIDERS = f"{API}/providers/"
HEALTH = f"{API}/health/"
STATS = f"{API}/stats/"
EVENTS = f"{API}/events/"
EVENTS_REPLAY = f"{API}/events/replay/"
# A stored event's id is digits: /events/replay/ is never taken for the event "replay".
EVENT = API + r"/events/{id:\d+}/"
EVENT_REPLAY = API + r"/events/{id:\d+}/replay/"
DEAD_LETTERS = f"{API}/dead-letters/"

# Operations (no key: probes and scrapers).
HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
OPENAPI = "/openapi.yaml"

#: The admin dashboard's prefix (staff credentials).
ADMIN = "/payments/admin"

#: First path segments under ``API`` that are not providers ("replay" kept free for a bulk path).
RESERVED_NAMES = frozenset({"providers", "health", "stats", "events", "dead-letters", "replay"})
#: The webhook route as matched: a provider is one path segment and never a reserved name, so
#: another method on /health/ or /events/ is that path's 405 (with its Allow), not a webhook.
WEBHOOK_ROUTE = API + "/{provider:(?!(?:" + "|".join(sorted(RESERVED_NAMES)) + ")(?:/|$))[^{}/]+}/"
#: What a provider may be named: it is a path segment and a metric label.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def webhook_path(provider: str) -> str:
    """``/payments/api/webhooks/<provider>/``: where ``provider``'s webhooks are sent."""
    return f"{API}/{provider}/"


def loopback_base(host: str, port: int) -> str:
    """``http://host:port`` reaching a listener bound to ``host`` from this machine: a wildcard
    address becomes loopback, an IPv6 address goes in brackets (``http://[::1]:8080``)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 (a bind address)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
