"""Retry policy: exponential backoff with jitter (which errors are transient: :func:`db.errors.is_transient`)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When a failed delivery runs again. How often is each row's own ``max_attempts`` (set at insert from
    ``RETRY_MAX_ATTEMPTS``, raised by a replay), so a replay's budget never depends on a process's settings.

    Attributes:
        min_backoff_ms: Delay before the first retry, in milliseconds (Dramatiq's unit).
        max_backoff_ms: Upper bound of any delay, in milliseconds.
    """

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
