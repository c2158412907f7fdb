"""What the handlers share: settings and the long-lived parts built from them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.delivery import Delivery
from gateway.events.base import EventStore
from gateway.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.observe import EventFeed
from gateway.settings.model import Settings
from gateway.stats import StatsLedger
from gateway.stores import Store
from gateway.tunnel import TunnelState


@dataclass(eq=False)
class Services:
    settings: Settings
    store: Store
    forwarder: Forwarder
    metrics: Metrics
    events: EventStore
    stats: StatsLedger
    delivery: Delivery | None = None
    tracer: Any = None
    started: float = field(default_factory=time.time)
    draining: bool = False
    shutdown_deadline: float | None = None  # time.monotonic() by which the process should be gone
    last_event: dict[str, float] = field(default_factory=dict)
    feed: EventFeed = field(default_factory=EventFeed)  # answered webhooks, for live watchers
    tunnel: TunnelState | None = None  # webhook-gateway dev --ngrok: the public tunnel
    # Applied to every config this process loads, at start and on reload (dev --ngrok: the tunnel's URL).
    overlay: Callable[[Settings], Settings] | None = None


SERVICES = web.AppKey("services", Services)
