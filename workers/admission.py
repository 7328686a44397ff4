"""Admission: which lane a clinic's new delivery takes, so one clinic's flood cannot delay the others.

Every clinic has a token bucket (``rate_per_s`` tokens a second, at most ``burst`` saved up). A new
delivery that finds a token goes on the live lane; one that finds none goes on the overflow lane,
which workers take after live messages and with a bounded number of threads
(:class:`workers.broker.DeliveryBroker`). Nothing is refused, dropped or delayed in PostgreSQL, and
no attempt is spent: a delivery on the overflow lane is processed like any other, later. (Dramatiq's
rate limiters were not used: they count a throttled message as a failed attempt.)

The buckets live in the web process's memory, one set per process: with ``WEB_PROCESSES=n`` a
clinic's live rate is up to ``n`` times the setting. That keeps admission off the request's
critical path (no statement, no round trip); the price is a per-process, approximate rate, which
is all fairness needs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from db.types import OrgId
from workers.broker import Lane

#: Buckets kept before the full ones (clinics idle long enough to have refilled) are dropped.
PRUNE_AT = 10_000


class Admission:
    """Per-clinic token buckets deciding :attr:`Lane.LIVE` or :attr:`Lane.OVERFLOW` for new deliveries.

    Args:
        rate_per_s: Live deliveries per second a clinic may send, sustained (``ORG_LIVE_RATE_PER_S``);
            0 sends everything live.
        burst: Live deliveries a clinic may send at once after being quiet (``ORG_LIVE_BURST``), >= 1.
        clock: Seconds, monotonic (tests pass their own).
    """

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s < 0 or burst < 1:
            raise ValueError(f"rate_per_s must be >= 0 and burst >= 1, got {rate_per_s} and {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        #: org id -> (tokens, when they were counted).
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}
        self._prune_at = PRUNE_AT

    def lane(self, org_id: OrgId) -> Lane:
        """The lane for one new delivery of ``org_id``, taking a token when it goes live. O(1) amortized."""
        if self.rate_per_s == 0:
            return Lane.LIVE
        now = self._clock()
        tokens, then = self._buckets.get(org_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        lane = Lane.LIVE if tokens >= 1 else Lane.OVERFLOW
        if lane is Lane.LIVE:
            tokens -= 1
        if org_id not in self._buckets and len(self._buckets) >= self._prune_at:
            self._prune(now)
        self._buckets[org_id] = (tokens, now)
        return lane

    def _prune(self, now: float) -> None:
        """Forget the clinics whose buckets are full again: forgetting one changes nothing it will be told."""
        full_after_s = self.burst / self.rate_per_s
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after_s}
        # If most clinics are busy, the next look waits until the table has doubled: amortized O(1).
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))
