"""Key rotation: which configured key verified the stored events, for ``webhook-gateway check``.

A provider rolls a secret by listing the new one first and keeping the old one after it until
nothing signs with it any more. The PostgreSQL event store records, per accepted event, the
position of the key that verified it (``secret_index``: secrets first, then public keys); ``check``
warns about every non-first key that has not matched for ``rotation_warn_after``, so it can be
removed. Without PostgreSQL nothing is recorded, and ``check`` says so (the metric
``webhook_gateway_signature_secret_matches_total`` still shows it live).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.settings.model import Settings

_USAGE = """
SELECT provider, secret_index, max(received_at) AS last
FROM webhook_events WHERE secret_index IS NOT NULL GROUP BY provider, secret_index
"""
_SINCE = "SELECT min(received_at) FROM webhook_events WHERE secret_index IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Usage:
    """When each (provider, key index) last verified a stored event, and since when that is known."""

    last: dict[tuple[str, int], datetime]
    since: datetime | None


async def load_usage(dsn: str, timeout: float = 5.0) -> Usage | str:  # noqa: ASYNC109 (asyncpg timeouts)
    """The usage, or why it is not available."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"cannot connect to PostgreSQL ({type(exc).__name__})"
    try:
        rows = await conn.fetch(_USAGE, timeout=timeout)
        since = await conn.fetchval(_SINCE, timeout=timeout)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        return "the event store lacks the secret_index column: run `webhook-gateway migrate`"
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"the query failed ({type(exc).__name__})"
    finally:
        await conn.close()
    return Usage({(r["provider"], r["secret_index"]): r["last"] for r in rows}, since)


def report(settings: Settings, usage: Usage | str, now: datetime) -> list[str]:
    """One line per non-first key of every provider with several: a WARNING when it can go."""
    lines = []
    for name, spec in settings.providers.items():
        sig = spec.signature
        labels = [s.label for s in sig.secrets] + [k.label for k in sig.public_keys] if sig else []
        if len(labels) < 2:
            continue
        if isinstance(usage, str):
            lines.append(f"rotation: {name}: {len(labels)} keys; which one matched is not available: {usage}")
            continue
        period = timedelta(seconds=spec.rotation_warn_after)
        for index, label in enumerate(labels[1:], start=1):
            lines.append(_key_line(name, index, label, usage, period, now))
    return lines


def _key_line(name: str, index: int, label: str, usage: Usage, period: timedelta, now: datetime) -> str:
    last = usage.last.get((name, index))
    key = f"{name}: key #{index} ({label})"
    if last is not None and now - last <= period:
        return f"rotation: {key} last matched {_ago(now - last)} ago: still in use"
    if usage.since is None or now - usage.since < period:
        return f"rotation: {key}: not enough history yet (need {_ago(period)} of stored events)"
    when = f"last matched {_ago(now - last)} ago" if last else "no stored event matched it"
    return f"WARNING: rotation: {key} has not matched for {_ago(period)} ({when}): it can be retired"


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0", "")
    return f"{seconds}s"
