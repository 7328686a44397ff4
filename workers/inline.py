"""Run a synchronous tool call inside the request that received it, only while its caller waits.

Vapi waits for a tool call's reply at most ``server.timeoutSeconds`` (20 s by
default; FINDINGS.md §1). A booking made after the caller stopped listening,
or after they were told it failed, is a booking behind their back. So a
synchronous tool call (every tool without ``async: true``):

* runs only here, in its own request (workers never claim it, the sweeper
  never sends it, replay refuses it);
* must commit before its row's ``answer_by``: PostgreSQL checks the time in
  the completion UPDATE, and ``statement_timeout`` ends a statement blocked
  past it; the transaction then rolls back;
* otherwise ends ``missed`` with the reason, keeping the caller's number and
  what they asked (the row's payload), for a person to call back.

If the process dies mid-call, PostgreSQL rolls the transaction back with
the connection, and the sweeper marks the row ``missed`` after ``answer_by``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from db import deliveries, tool_calls
from db.errors import is_statement_timeout, is_transient, is_unavailable
from db.pool import set_local_statement_timeout
from db.types import Conn, DeliveryId
from workers import metrics
from workers.encryption import Keyring
from workers.errors import PermanentError, ToolError
from workers.handlers import tools
from workers.outcomes import ProcessingOutcome
from workers.parsing import stored

log = structlog.get_logger("workers.inline")

#: What the assistant reads to a caller who was not served; the clinic sees the row as missed.
MISSED_REPLY = "I could not complete that just now. The clinic has your number and will call you back."
#: Extra seconds the event loop waits beyond ``answer_by`` for PostgreSQL's own deadline to act.
GRACE_S = 1.0


class DeadlinePassed(Exception):
    """The caller's deadline passed before the tool call could commit."""


@dataclass(frozen=True, slots=True)
class InlineOutcome:
    """``entry`` is the ``results[]`` entry to send; ``status`` is completed, missed or skipped.

    ``skipped`` means another request holds the call, or it finished before:
    the caller then answers from the stored row.
    """

    status: ProcessingOutcome
    entry: dict[str, Any] | None = None


async def run_sync_tool_call(
    pool: asyncpg.Pool, delivery_id: DeliveryId, *, deadline_s: float, keyring: Keyring
) -> InlineOutcome:
    """Claim and run one synchronous tool call before ``deadline_s`` (``time.monotonic()`` seconds), its
    encrypted arguments opened with ``keyring``; the outcome's entry is the caller's reply (the row stores it
    with decrypted values redacted).

    Never raises for the tool's sake: a tool error is a completed reply, and
    any other failure (a bug, the deadline, PostgreSQL gone) ends the row
    ``missed`` where PostgreSQL can still be reached.

    Raises:
        The "PostgreSQL unavailable" errors of :data:`db.errors.UNAVAILABLE_ERRORS`
        when the claim itself cannot be made (the caller answers 503; the row
        stays ``pending`` and is marked ``missed`` after its deadline).
    """
    remaining_s = deadline_s - time.monotonic()
    if remaining_s <= 0:
        await tool_calls.mark_missed(pool, delivery_id, "the deadline passed before this tool call could start")
        return InlineOutcome(ProcessingOutcome.MISSED)
    started = time.perf_counter()
    async with pool.acquire() as conn:
        claim = await tool_calls.claim_sync(conn, delivery_id)
        if claim is None:
            return InlineOutcome(ProcessingOutcome.SKIPPED)
        try:
            async with asyncio.timeout(max(0.0, deadline_s - time.monotonic()) + GRACE_S):
                entry = await _apply_with_tries(conn, claim, deadline_s, keyring)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the caller was not served
            if isinstance(exc, TimeoutError):
                # A statement was cut off mid-flight: close the connection (PostgreSQL rolls back) rather
                # than return it to the pool in an unknown state.
                conn.terminate()
            outcome = await _missed(pool, claim, exc)
        else:
            outcome = InlineOutcome(ProcessingOutcome.COMPLETED, entry)
    duration_s = time.perf_counter() - started
    metrics.DELIVERIES_PROCESSED.labels(claim.event_type, outcome.status).inc()
    metrics.PROCESSING_DURATION.labels(claim.event_type).observe(duration_s)
    return outcome


async def _apply_with_tries(conn: Conn, claim: deliveries.Claim, deadline_s: float, keyring: Keyring) -> dict[str, Any]:
    """The tool and the completion in one transaction; serialization failures are tried again while time remains."""
    while True:
        try:
            return await _apply_once(conn, claim, deadline_s, keyring)
        except Exception as exc:
            if not is_transient(exc) or deadline_s - time.monotonic() < 0.1:
                raise
            await asyncio.sleep(0.02)


async def _apply_once(conn: Conn, claim: deliveries.Claim, deadline_s: float, keyring: Keyring) -> dict[str, Any]:
    remaining_ms = int((deadline_s - time.monotonic()) * 1000)
    if remaining_ms <= 0:
        raise DeadlinePassed("the deadline passed before the tool call committed")
    async with conn.transaction():
        # Ends a statement blocked past the deadline (a lock wait, say) inside PostgreSQL itself.
        await set_local_statement_timeout(conn, remaining_ms)
        answered = await tools.handle_tool_call(
            conn, claim.org_id, stored(claim.payload, claim.event_type), claim.event_id, keyring
        )
        if not await tool_calls.complete_sync(conn, claim, answered.stored):
            raise DeadlinePassed("the deadline passed before the tool call committed")
        return answered.reply


async def _missed(pool: asyncpg.Pool, claim: deliveries.Claim, exc: BaseException) -> InlineOutcome:
    if isinstance(exc, (TimeoutError, DeadlinePassed)) or is_statement_timeout(exc):
        reason = "the caller's deadline passed before this tool call finished"
    elif isinstance(exc, (PermanentError, ToolError)):
        reason = f"permanent: {exc}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    log.warning("tool_call_missed", delivery_id=str(claim.id), org_id=str(claim.org_id), error=reason)
    try:
        if not await tool_calls.mark_missed(pool, claim.id, reason):
            # It committed after all (cut off during COMMIT): the caller is answered from the row.
            return InlineOutcome(ProcessingOutcome.SKIPPED)
    except Exception as mark_exc:
        if not is_unavailable(mark_exc):
            raise
        # The sweeper marks it after answer_by; nothing runs it in the meantime.
        log.warning("tool_call_missed_unrecorded", delivery_id=str(claim.id))
    return InlineOutcome(ProcessingOutcome.MISSED)
