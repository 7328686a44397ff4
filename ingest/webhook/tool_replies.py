"""Answer a message's tool calls in the response: store the message once and each call once, run each
synchronous call while its caller waits (:mod:`workers.inline`), queue the async ones."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from db import deliveries
from db.deliveries import NewDelivery
from db.statuses import DeliveryStatus
from db.types import DeliveryId, OrgId
from ingest.appkeys import DB_POOL, PROCESSING, SETTINGS
from ingest.webhook.answers import Answer
from ingest.webhook.background import enqueue_in_background
from workers.broker import Lane
from workers.encryption import Keyring
from workers.inline import GRACE_S, MISSED_REPLY, run_sync_tool_call
from workers.messages import Envelope, ToolInvocation, reply_entry, tool_event_id
from workers.outcomes import ProcessingOutcome


async def answer_tool_calls(
    request: web.Request, env: Envelope, org_id: OrgId, invocations: list[ToolInvocation], context: dict[str, Any]
) -> Answer:
    """Store the message once and each tool call once, run the synchronous ones inline, answer every one.

    One statement stores the message's own row (the whole message, for the
    record) and one row per tool call (only its own part, :meth:`Envelope.tool_call_message`),
    so storage is linear in the message and the request's rows stand or fall
    together. Synchronous calls then run one after another under one deadline
    (``TOOL_CALL_TIMEOUT_S`` from now; :mod:`workers.inline`); async tools go
    to the workers. FINDINGS.md §1 for the reply shape.
    """
    settings = request.app[SETTINGS]
    pool = request.app[DB_POOL]
    keyring = request.app[PROCESSING].keyring
    deadline_s = time.monotonic() + settings.tool_call_timeout_s
    answer_by = datetime.now(UTC) + timedelta(seconds=settings.tool_call_timeout_s)
    normalised = ",".join(env.normalised) or None
    rows = [
        NewDelivery(
            org_id=org_id,
            event_type=env.type,
            event_id=env.message_key(),
            payload=env.message,
            max_attempts=settings.retry_max_attempts,
            job_id=None,
            status=DeliveryStatus.COMPLETED,
            result={"applied": False, "reason": "tool-call message; each tool call is a delivery of its own"},
            normalised=normalised,
            facts=env.facts(),
        ),
    ]
    # The message's async tool calls go to the workers as one message.
    message_id = str(uuid.uuid4())
    for invocation in invocations:
        rows.append(
            NewDelivery(
                org_id=org_id,
                event_type=env.type,
                event_id=tool_event_id(env, invocation),
                payload=env.tool_call_message(invocation),
                max_attempts=settings.retry_max_attempts,
                job_id=message_id if invocation.is_async else None,
                answer_by=None if invocation.is_async else answer_by,
                normalised=normalised,
                facts=env.facts(invocation),
            )
        )
    ids = await deliveries.insert_many(pool, rows)  # RowRefused: the request's rows stand or fall together
    entries: list[dict[str, Any]] = []
    duplicates = missed = 0
    queued = []
    for invocation, row, delivery_id in zip(invocations, rows[1:], ids[1:], strict=True):
        if invocation.is_async:
            if delivery_id is None:
                duplicates += 1
            else:
                queued.append(delivery_id)
            entries.append(reply_entry(invocation, result="accepted"))
            continue
        if delivery_id is None:
            duplicates += 1
            stored = await deliveries.find(pool, org_id, row.event_id)
            delivery_id = stored.id if stored else None
        entry = await _run_or_await(pool, keyring, delivery_id, invocation, deadline_s) if delivery_id else None
        if entry is None:
            missed += 1
            entry = reply_entry(invocation, error=MISSED_REPLY)
        entries.append(entry)
    if queued:
        # Asynchronous tool calls stay live: few, and each is something a caller asked for.
        enqueue_in_background(request.app, queued, message_id, Lane.LIVE)
    context["tool_calls"] = len(invocations)
    if missed:
        context["missed"] = missed
    outcome_label = "duplicate" if duplicates == len(invocations) else "accepted"
    if env.type == "function-call":
        only = entries[0]
        return Answer(200, outcome_label, {"result": only.get("result", only.get("error", ""))})
    return Answer(200, outcome_label, {"results": entries})


async def _run_or_await(
    pool: asyncpg.Pool, keyring: Keyring, delivery_id: DeliveryId, invocation: ToolInvocation, deadline_s: float
) -> dict[str, Any] | None:
    """Run the tool call here if nobody else is, else wait for the request that is; ``None`` if missed.

    A repeated request (Vapi's ``backoffPlan`` after a 503) may run a call the
    first request stored but never ran, as long as its caller still waits.
    """
    delay_s = 0.01
    while True:
        outcome = await run_sync_tool_call(pool, delivery_id, deadline_s=deadline_s, keyring=keyring)
        if outcome.status == ProcessingOutcome.COMPLETED:
            return outcome.entry
        if outcome.status == ProcessingOutcome.MISSED:
            return None
        stored = await deliveries.find_by_id(pool, delivery_id)
        if stored is None or stored.status == DeliveryStatus.MISSED:
            return None
        if stored.status == DeliveryStatus.COMPLETED and isinstance(stored.result, dict):
            return stored.result
        if time.monotonic() >= deadline_s + GRACE_S:
            return None
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.2)
