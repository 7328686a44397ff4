"""What processing one delivery did: the outcome vocabulary of workers and of inline tool calls."""

from __future__ import annotations

from enum import StrEnum


class ProcessingOutcome(StrEnum):
    """The result of one attempt, as metrics (``vapi_deliveries_processed_total{outcome}``) and logs name it."""

    #: Applied, and marked completed in the same transaction.
    COMPLETED = "completed"
    #: Failed; a retry is scheduled after its backoff.
    RETRIED = "retried"
    #: Failed for the last time (or permanently); now a dead letter.
    DEAD_LETTERED = "dead_lettered"
    #: Nothing to do: finished already, claimed by another, or not yet due.
    SKIPPED = "skipped"
    #: A synchronous tool call that did not finish while its caller waited.
    MISSED = "missed"
