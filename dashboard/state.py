"""What the dashboard's handlers share, kept on its sub-application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dashboard.audit import AuditTrail
from dashboard.auth import Session, Sessions
from dashboard.sampler import Sampler
from dashboard.tailhub import TailHub
from gateway.app_state import Services


@dataclass(eq=False)
class Dashboard:
    services: Services
    sessions: Sessions
    sampler: Sampler
    audit: AuditTrail
    webhook_base: str = ""  # where "send test webhook" posts: the gateway's own listener, on loopback
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # set on shutdown: live streams end
    key_usage: tuple[float, Any] = (0.0, None)  # (when read, rotation Usage): cached for a minute
    tail: TailHub | None = None  # the live tails' shared ring, made by the first tail


DASHBOARD = web.AppKey("dashboard", Dashboard)
SESSION = web.RequestKey("dashboard_session", Session)


def session_of(request: web.Request) -> Session:
    session: Session = request[SESSION]
    return session
