"""Process one stored delivery: claim, apply, finish, exactly once in effect.

The handler's writes and the ``completed`` mark commit in one transaction,
fenced by the claim's attempt number, so a redelivered message, a duplicate
or a worker killed half-way can never apply a delivery twice.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from db import deliveries
from db.errors import is_transient
from db.types import Conn
from workers import metrics
from workers.errors import LeaseLost, PermanentError
from workers.handlers import HANDLERS
from workers.outcomes import ProcessingOutcome
from workers.retry import RetryPolicy

log = structlog.get_logger("workers.processing")


#: Log level of ``delivery_processed`` by outcome (info otherwise).
_LOG_LEVELS = {ProcessingOutcome.RETRIED: "warning", ProcessingOutcome.DEAD_LETTERED: "error"}


@dataclass(frozen=True, kw_only=True)
class ProcessingConfig:
    """Knobs of :func:`process_delivery`.

    Attributes:
        lease_s: How long a claim holds a delivery before the sweeper may reclaim it, in seconds.
        in_transaction_tries: Quick tries of the transaction on transient errors
            (tenacity) before the attempt counts as failed.
    """

    lease_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    in_transaction_tries: int = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened (``status``; :class:`workers.outcomes.ProcessingOutcome`).

    ``retry_delay_ms`` is set when ``status`` is retried; ``message_id`` is the
    Dramatiq message id reserved for that retry; ``error`` is the failure's
    text when it was retried or dead-lettered.
    """

    status: ProcessingOutcome
    result: Any = None
    retry_delay_ms: int | None = None
    message_id: str | None = None
    error: str | None = None


async def apply(conn: Conn, claim: deliveries.Claim) -> dict[str, Any]:
    """Run a claimed delivery's handler from :data:`workers.handlers.HANDLERS`.

    A type without a handler is stored completed by the receiver; one that
    arrives here all the same (a row from before the registry) completes with a note.

    Raises:
        PermanentError: the message is malformed for its type.
    """
    handler = HANDLERS.get(claim.event_type)
    if handler is None:
        return {"applied": False, "reason": f"nothing to apply for {claim.event_type}"}
    return await handler(conn, claim)


async def process_delivery(pool: asyncpg.Pool, delivery_id: uuid.UUID, config: ProcessingConfig) -> Outcome:
    """Claim and process one delivery (never a synchronous tool call: :mod:`workers.inline` runs those).

    Returns:
        The outcome. ``skipped`` means there was nothing to do: the delivery
        is finished, claimed by someone else, or not yet due.

    Raises:
        asyncpg and OS errors when PostgreSQL is unreachable while claiming or
        recording a failure; the delivery then stays as it was (or
        ``processing`` until its lease expires) and the sweeper resends it.
    """
    async with pool.acquire() as conn:
        claim = await deliveries.claim(conn, delivery_id, lease_s=config.lease_s)
        if claim is None:
            return Outcome(ProcessingOutcome.SKIPPED)
        started = time.perf_counter()
        metrics.QUEUE_WAIT.observe(claim.wait_s)
        bound = log.bind(
            delivery_id=str(claim.id), org_id=str(claim.org_id), type=claim.event_type, attempt=claim.attempt
        )
        if claim.attempt > claim.max_attempts:
            # Reclaimed after a crash once too often: the budget is spent.
            outcome = await _finish_failed(
                conn, claim, "attempt budget exhausted (worker stopped mid-attempt)", config, True
            )
        else:
            try:
                result = await _apply_with_tries(conn, claim, config.in_transaction_tries)
            except LeaseLost:
                bound.warning("delivery_lease_lost")
                return Outcome(ProcessingOutcome.SKIPPED)
            except PermanentError as exc:
                outcome = await _finish_failed(conn, claim, f"permanent: {exc}", config, True)
            except Exception as exc:  # noqa: BLE001 - any handler bug must become a retry, not a lost delivery
                outcome = await _finish_failed(conn, claim, f"{type(exc).__name__}: {exc}", config, False)
            else:
                outcome = Outcome(ProcessingOutcome.COMPLETED, result=result)
    duration_s = time.perf_counter() - started
    metrics.DELIVERIES_PROCESSED.labels(claim.event_type, outcome.status).inc()
    if claim.replay_count and outcome.status in (ProcessingOutcome.COMPLETED, ProcessingOutcome.DEAD_LETTERED):
        metrics.REPLAYS.labels(outcome.status).inc()
    metrics.PROCESSING_DURATION.labels(claim.event_type).observe(duration_s)
    # An operator watching at WARNING sees every retry and every dead letter, with what went wrong.
    level = _LOG_LEVELS.get(outcome.status, "info")
    getattr(bound, level)(
        "delivery_processed",
        outcome=outcome.status,
        duration_ms=round(duration_s * 1000, 2),
        queue_wait_ms=round(claim.wait_s * 1000, 2),
        retry_delay_ms=outcome.retry_delay_ms,
        max_attempts=claim.max_attempts,
        error=outcome.error,
    )
    return outcome


async def _apply_with_tries(conn: Conn, claim: deliveries.Claim, tries: int) -> dict[str, Any]:
    """The handler and the completion in one transaction, tried again on serialization failures and deadlocks.

    Everything runs on the connection that made the claim: one connection per
    delivery, so a full pool can never deadlock on a second acquire. If that
    connection is lost, the error propagates and the lease brings the
    delivery back.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(tries),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    ):
        with attempt:
            return await _apply_once(conn, claim)
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def _apply_once(conn: Conn, claim: deliveries.Claim) -> dict[str, Any]:
    async with conn.transaction():
        result = await apply(conn, claim)
        if not await deliveries.complete(conn, claim, result):
            raise LeaseLost(str(claim.id))
        return result


async def _finish_failed(
    conn: Conn, claim: deliveries.Claim, error: str, config: ProcessingConfig, dead: bool
) -> Outcome:
    if dead or claim.attempt >= claim.max_attempts:
        await deliveries.fail(conn, claim, error, retry_at=None, job_id=None)
        return Outcome(ProcessingOutcome.DEAD_LETTERED, error=error)
    delay_ms = config.retry.backoff_ms(claim.attempt)
    message_id = str(uuid.uuid4())
    retry_at = datetime.now(UTC) + timedelta(milliseconds=delay_ms)
    if not await deliveries.fail(conn, claim, error, retry_at=retry_at, job_id=message_id):
        return Outcome(ProcessingOutcome.SKIPPED)
    return Outcome(ProcessingOutcome.RETRIED, retry_delay_ms=delay_ms, message_id=message_id, error=error)
