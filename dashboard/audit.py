"""The dashboard's audit trail: one structured log line per staff action (who, when, what).

The event store has no table for staff actions, so the log line is the record of truth (ship it
with the other logs); the last ones are also kept in memory for the overview page.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

log = logging.getLogger("gateway.audit")


class AuditTrail:
    def __init__(self, keep: int = 100) -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def record(self, who: str, action: str, **what: Any) -> None:
        entry = {"at": time.time(), "who": who, "action": action, **what}
        self.recent.appendleft(entry)
        log.info("dashboard action", extra={"audit": True, "who": who, "action": action, "details": what})
