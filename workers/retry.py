"""Retry policy: exponential backoff with jitter, and which errors are transient."""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg

#: Errors worth retrying at once, on the same connection (tenacity), before the
#: attempt counts as failed: serialization failures and deadlocks. A lost
#: connection is not retried in place: the delivery's lease expires and the
#: sweeper sends it again (as ``failed``, with the backoff of the next attempt).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors that a quick retry of the same transaction may cure."""
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and when a failed delivery runs again.

    Attributes:
        max_attempts: Attempts in all, the first included; then ``dead_letter``.
        min_backoff_ms: Delay before the first retry, in milliseconds (Dramatiq's unit).
        max_backoff_ms: Upper bound of any delay, in milliseconds.
    """

    max_attempts: int = 5
    min_backoff_ms: int = 1_000
    max_backoff_ms: int = 300_000

    def backoff_ms(self, attempt: int, *, rng: random.Random | None = None) -> int:
        """Delay after failed attempt number ``attempt`` (1-based).

        Exponential (``min * 2**(attempt-1)``, capped at ``max``) with "equal
        jitter": uniform in the upper half, so retries of a burst spread out
        but never come sooner than half the nominal delay.
        """
        nominal = min(self.max_backoff_ms, self.min_backoff_ms * 2 ** max(attempt - 1, 0))
        return int(nominal / 2 + (rng or random).uniform(0, nominal / 2))
