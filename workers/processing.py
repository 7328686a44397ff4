"""Process stored deliveries: claim, apply, finish, exactly once in effect, a batch at a time.

A batch's handler writes and their ``completed`` marks commit in one
transaction, fenced by each claim's attempt number, so a redelivered message,
a duplicate or a worker killed half-way can never apply a delivery twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from db import deliveries
from db.errors import is_transient
from db.types import Conn, DeliveryId
from workers import metrics
from workers.encryption import Keyring
from workers.errors import LeaseLost, PermanentError
from workers.handlers import HANDLERS
from workers.messages import TOOL_TYPES
from workers.outcomes import ProcessingOutcome
from workers.retry import RetryPolicy

log = structlog.get_logger("workers.processing")


#: Log level of ``delivery_processed`` by outcome (info otherwise).
_LOG_LEVELS = {ProcessingOutcome.RETRIED: "warning", ProcessingOutcome.DEAD_LETTERED: "error"}


@dataclass(frozen=True, kw_only=True)
class ProcessingConfig:
    """Knobs of :func:`process_deliveries`.

    Attributes:
        lease_s: How long a claim holds a delivery before the sweeper may reclaim it, in seconds.
        in_transaction_tries: Quick tries of the transaction on transient errors
            (tenacity) before the attempt counts as failed.
        keyring: The keys that open Vapi's encrypted tool arguments (``VAPI_ENCRYPTION_PRIVATE_KEYS``).
    """

    lease_s: float = 60.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    in_transaction_tries: int = 3
    keyring: Keyring = field(default_factory=Keyring)


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


async def apply(conn: Conn, claims: list[deliveries.Claim], keyring: Keyring) -> list[dict[str, Any]]:
    """Run claimed deliveries' handlers from :data:`workers.handlers.HANDLERS`, one call per message type
    (types in the order of their first claim); returns each claim's result, in order.

    A type without a handler is stored completed by the receiver; one that
    arrives here all the same (a row from before the registry) completes with a note.

    Raises:
        PermanentError: a message is malformed for its type. Anything else a handler raised.
    """
    by_type: dict[str, list[int]] = {}
    for i, claim in enumerate(claims):
        by_type.setdefault(claim.event_type, []).append(i)
    results: list[dict[str, Any]] = [{} for _ in claims]
    for event_type, indexes in by_type.items():
        handler = HANDLERS.get(event_type)
        if handler is None:
            for i in indexes:
                results[i] = {"applied": False, "reason": f"nothing to apply for {event_type}"}
            continue
        for i, result in zip(indexes, await handler(conn, [claims[i] for i in indexes], keyring), strict=True):
            results[i] = result
    return results


async def process_deliveries(
    pool: asyncpg.Pool, delivery_ids: Sequence[DeliveryId], config: ProcessingConfig
) -> list[Outcome]:
    """Claim the due deliveries among ``delivery_ids`` and process them together (never a synchronous tool call:
    :mod:`workers.inline` runs those).

    One statement claims them all; their handlers and one completing statement
    run in one transaction. If a handler raises, that transaction rolls back
    and the batch is applied again in halves, each in its own transaction,
    until the failing deliveries stand alone: each failure is recorded on its
    own row and its neighbours complete as if they had come alone (``k``
    failures in a batch of ``n`` cost ``O(k log n)`` extra transactions, and
    no subtransactions). Each message type's handler runs once for the batch
    (one statement for all its deliveries), in the order (type, org, Vapi call
    id), so two batches that touch the same calls lock them in the same order.
    Tool calls (async tools) each run in a transaction of their own.

    Returns:
        One outcome per id, in order. ``skipped`` means there was nothing to
        do: the delivery is finished, claimed by someone else, or not yet due.

    Raises:
        asyncpg and OS errors when PostgreSQL is unreachable; the deliveries
        then stay as they were (or ``processing`` until their lease expires)
        and the sweeper resends them.
    """
    outcomes: dict[uuid.UUID, Outcome] = {}
    lost: set[DeliveryId] = set()
    async with pool.acquire() as conn:
        claims = await deliveries.claim_many(conn, delivery_ids, lease_s=config.lease_s)
        if not claims:
            return [Outcome(ProcessingOutcome.SKIPPED)] * len(delivery_ids)
        started = time.perf_counter()
        runnable = []
        for claim in claims:
            metrics.QUEUE_WAIT.observe(claim.wait_s)
            if claim.attempt > claim.max_attempts:
                # Reclaimed after a crash once too often: the budget is spent.
                error = "attempt budget exhausted (worker stopped mid-attempt)"
                outcomes[claim.id] = await _finish_failed(conn, claim, error, config, True)
            else:
                runnable.append(claim)
        # One global order (type, then call) in every batch, so concurrent batches lock calls in one order.
        runnable.sort(key=lambda c: (c.event_type, c.org_id, c.vapi_call_id or ""))
        # Tool calls (async tools: a booking) run alone: a neighbour's failure must not run a booking twice,
        # which its metrics and log lines would count twice though its effects roll back.
        batchable = [c for c in runnable if c.event_type not in TOOL_TYPES]
        alone = [c for c in runnable if c.event_type in TOOL_TYPES]
        results = await _apply_isolated(conn, batchable, config)
        for claim in alone:
            results += await _apply_isolated(conn, [claim], config)
        for claim, applied in zip([*batchable, *alone], results, strict=True):
            if isinstance(applied, LeaseLost):
                lost.add(claim.id)
                outcomes[claim.id] = Outcome(ProcessingOutcome.SKIPPED)
            elif isinstance(applied, PermanentError):
                outcomes[claim.id] = await _finish_failed(conn, claim, f"permanent: {applied}", config, True)
            elif isinstance(applied, Exception):
                error = f"{type(applied).__name__}: {applied}"
                outcomes[claim.id] = await _finish_failed(conn, claim, error, config, False)
            else:
                outcomes[claim.id] = Outcome(ProcessingOutcome.COMPLETED, result=applied)
    duration_s = time.perf_counter() - started
    for claim in claims:
        _report(claim, outcomes[claim.id], duration_s, lease_lost=claim.id in lost)
    return [outcomes.get(i, Outcome(ProcessingOutcome.SKIPPED)) for i in delivery_ids]


def _report(claim: deliveries.Claim, outcome: Outcome, duration_s: float, *, lease_lost: bool) -> None:
    """Metrics and the one log line of a processed delivery (its batch's duration is its claim-to-outcome time)."""
    bound = log.bind(delivery_id=str(claim.id), org_id=str(claim.org_id), type=claim.event_type, attempt=claim.attempt)
    if lease_lost:
        bound.warning("delivery_lease_lost")
        return
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


#: Per claim: the handler's result, or the exception that claim alone gets (LeaseLost: another claim took it).
Applied = Any


async def _apply_isolated(conn: Conn, claims: list[deliveries.Claim], config: ProcessingConfig) -> list[Applied]:
    """Apply ``claims`` in one transaction; when one fails, apply their halves separately, down to single claims.

    Everything runs on the connection that made the claims: one connection per
    batch, so a full pool can never deadlock on a second acquire. If that
    connection is lost, the error propagates and the leases bring the deliveries back.
    """
    if not claims:
        return []
    try:
        return await _apply_with_tries(conn, claims, config)
    except LeaseLost as lost:
        rest = [c for c in claims if c.id not in lost.delivery_ids]
        again = iter(await _apply_isolated(conn, rest, config))
        return [lost if c.id in lost.delivery_ids else next(again) for c in claims]
    except Exception as exc:  # any handler bug becomes a retry of its own delivery, never a lost batch
        if conn.is_closed():
            raise
        if len(claims) == 1:
            return [exc]
        middle = len(claims) // 2
        return [
            *await _apply_isolated(conn, claims[:middle], config),
            *await _apply_isolated(conn, claims[middle:], config),
        ]


async def _apply_with_tries(conn: Conn, claims: list[deliveries.Claim], config: ProcessingConfig) -> list[Applied]:
    """The handlers and the completion in one transaction, tried again on serialization failures and deadlocks."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(config.in_transaction_tries),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    ):
        with attempt:
            return await _apply_once(conn, claims, config.keyring)
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


async def _apply_once(conn: Conn, claims: list[deliveries.Claim], keyring: Keyring) -> list[Applied]:
    async with conn.transaction():
        done = list(zip(claims, await apply(conn, claims, keyring), strict=True))
        completed = await deliveries.complete_many(conn, done)
        if len(completed) < len(done):
            raise LeaseLost(frozenset(c.id for c in claims if c.id not in completed))
        return [result for _, result in done]


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
