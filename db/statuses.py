"""The delivery statuses: one vocabulary for the table's CHECK constraint, the code, the CLI and the admin API."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """Where a delivery (a row of ``webhook_delivery_log``) stands."""

    #: Stored and waiting: for a worker, or for its own request (a synchronous tool call).
    PENDING = "pending"
    #: Claimed under a lease; the claim's attempt number fences its outcome.
    PROCESSING = "processing"
    #: Applied (or nothing to apply); terminal, never run again.
    COMPLETED = "completed"
    #: An attempt failed; it runs again after its backoff.
    FAILED = "failed"
    #: Out of attempts or malformed; waits for an operator's replay.
    DEAD_LETTER = "dead_letter"
    #: A synchronous tool call whose caller was not served; terminal, never run or replayed: call back.
    MISSED = "missed"
    #: A dead letter an operator decided must not run, with a reason (``discards``); terminal.
    DISCARDED = "discarded"


class ReplayStatus(StrEnum):
    """Where a console replay (a row of ``replays``) stands."""

    #: Replaying, batch by batch, under a lease.
    RUNNING = "running"
    #: Every member was looked at (sent, or left because it no longer needed a replay).
    DONE = "done"
    #: Stopped by an operator after the batch in hand.
    CANCELLED = "cancelled"


#: What an operator may replay (synchronous tool calls among them are refused all the same).
REPLAYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.DEAD_LETTER})
#: Every status, in the table's order.
STATUSES = tuple(DeliveryStatus)
