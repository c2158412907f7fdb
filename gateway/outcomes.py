"""Names for what happened to a request or a stored event, beside the error codes of ``errors.py``.

A request's ``outcome`` (the metric label, the stats key, the log field) is either an error code
(``errors.ERROR_STATUS``) or one of the ``Outcome`` members below. ``StrEnum`` members are the
strings themselves, so labels, logs and stored rows read as before.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """A request that ended without an error."""

    FORWARDED = "forwarded"  # sync mode: the upstream answered 2xx
    QUEUED = "queued"  # queue mode: committed to the outbox, delivered in the background
    DUPLICATE = "duplicate"  # the event id was accepted before
    HANDSHAKE = "handshake"  # the provider checked the endpoint; answered by the gateway itself
    DEAD = "dead"  # (stats only) accepted, then dead-lettered after its last attempt


#: The event was accepted downstream: its dedup claim is committed and "last event" moves.
ACCEPTED = frozenset({Outcome.FORWARDED, Outcome.QUEUED})
#: What ``/stats/`` counts as accepted: the provider got a 2xx for something new (a handshake, or
#: an event that was accepted and only later dead-lettered).
ANSWERED = ACCEPTED | {Outcome.HANDSHAKE, Outcome.DEAD}


class EventStatus(enum.StrEnum):
    """Where a stored event is in its life (``events/base.py`` tells the whole cycle)."""

    QUEUED = "queued"  # waiting for delivery (queue mode)
    DELIVERING = "delivering"  # a worker holds it until locked_until
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after max_attempts


STATUSES = tuple(status.value for status in EventStatus)
