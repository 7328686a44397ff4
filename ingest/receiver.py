"""``POST /webhooks/vapi``: authenticate, parse, route, store once, enqueue, answer.

Nothing is acknowledged with a 2xx before it is committed to PostgreSQL; if
PostgreSQL is unreachable the answer is 503 and nothing is stored. A
request's answer depends only on its own message: a message PostgreSQL
refuses gets 400 alone (:mod:`ingest.group_commit`). A synchronous tool call
runs only while its caller waits (:mod:`workers.inline`). Redis
is not on that path: the enqueue happens after the answer, and a failed one
leaves the row for the sweeper.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from db import deliveries, orgs, quarantine
from db.deliveries import NewDelivery
from db.errors import UNAVAILABLE_ERRORS, RowRefused, is_data_error, refusal_reason
from db.statuses import DeliveryStatus
from ingest import auth, metrics
from ingest.appkeys import DB_POOL, ENQUEUER, ROUTER, SETTINGS, TASKS, WRITER
from workers import messages
from workers.handlers import QUEUED_TYPES
from workers.inline import GRACE_S, MISSED_REPLY, run_sync_tool_call
from workers.messages import TOOL_TYPES, Envelope, ToolInvocation, reply_entry, tool_event_id
from workers.outcomes import ProcessingOutcome

log = structlog.get_logger("ingest.receiver")


@dataclass
class _Answer:
    status: int
    outcome: str
    body: dict[str, Any]
    #: Close the connection after answering (a stalled or abandoned body).
    close: bool = False


class _Reject(Exception):
    def __init__(self, status: int, outcome: str, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.answer = _Answer(status, outcome, {"error": reason}, close)


async def receive_vapi(request: web.Request) -> web.Response:
    """Handle one server message; see the README's table of answers."""
    started = time.perf_counter()
    mtype: str | None = None
    context: dict[str, Any] = {}
    try:
        env = await _authenticated_envelope(request)
        mtype = env.type
        if env.normalised:
            context["normalised"] = ",".join(env.normalised)
        answer = await _store_and_answer(request, env, context)
    except _Reject as rej:
        answer = rej.answer
        context["reason"] = rej.answer.body["error"]
    except RowRefused as exc:
        answer = _Answer(400, "unstorable", {"error": f"message cannot be stored: {exc}"})
        context["reason"] = str(exc)
    except UNAVAILABLE_ERRORS as exc:
        answer = _Answer(503, "unavailable", {"error": "database unavailable, retry later"})
        context["error"] = type(exc).__name__
    label = metrics.type_label(mtype)
    duration_s = time.perf_counter() - started
    metrics.WEBHOOKS_RECEIVED.labels(label, answer.outcome).inc()
    metrics.REQUEST_DURATION.labels(label).observe(duration_s)
    log.info(
        "webhook_received",
        type=label,
        outcome=answer.outcome,
        http_status=answer.status,
        duration_ms=round(duration_s * 1000, 2),
        **context,
    )
    response = web.json_response(answer.body, status=answer.status)
    if answer.close:
        # Send the answer, then close at once: aiohttp would otherwise linger up to 10 s reading a body
        # that is not coming.
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
    return response


async def _authenticated_envelope(request: web.Request) -> Envelope:
    settings = request.app[SETTINGS]
    too_large = f"body larger than {settings.max_body_bytes} bytes"
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise _Reject(413, "too_large", too_large, close=True)
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Reject(413, "too_large", too_large, close=True) from None
    except TimeoutError:
        raise _Reject(
            408, "body_timeout", f"body not received within {settings.body_timeout_s:g} s", close=True
        ) from None
    except (ConnectionError, HttpProcessingError):
        # The client went away mid-body: nobody hears this answer, and it is not an outage.
        raise _Reject(400, "client_closed", "the client closed the connection mid-body", close=True) from None
    try:
        auth.verify(settings, request.headers, body)
    except auth.Unauthorized as exc:
        raise _Reject(401, "unauthorized", str(exc)) from None
    if request.content_type != "application/json":
        raise _Reject(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        return messages.parse(body)
    except messages.InvalidEnvelope as exc:
        raise _Reject(400, "invalid", str(exc)) from None


async def _store_and_answer(request: web.Request, env: Envelope, context: dict[str, Any]) -> _Answer:
    settings = request.app[SETTINGS]
    pool = request.app[DB_POOL]
    if env.type in settings.ignored_types:
        return _Answer(200, "ignored", {})
    invocations = env.tool_invocations() if env.type in TOOL_TYPES else []
    if len(invocations) > settings.max_tool_calls:
        raise _Reject(
            413,
            "too_many_tool_calls",
            f"message has {len(invocations)} tool calls; at most "
            f"{settings.max_tool_calls} are accepted (VAPI_MAX_TOOL_CALLS)",
        )
    org = await request.app[ROUTER].route(env.assistant_id, env.phone_number_id)
    if org is None:
        return await _quarantine(pool, env, invocations, context)
    context["org_id"] = str(org.id)
    if invocations:
        return await _answer_tool_calls(request, env, org.id, invocations, context)
    # A tool-call message without tool calls has nothing to run either.
    known = env.type in QUEUED_TYPES
    message_id = str(uuid.uuid4()) if known else None
    delivery_id = await request.app[WRITER].insert(
        NewDelivery(
            org_id=org.id,
            event_type=env.type,
            event_id=env.event_id(),
            payload=env.message,
            max_attempts=settings.retry_max_attempts,
            job_id=message_id,
            status=DeliveryStatus.PENDING if known else DeliveryStatus.COMPLETED,
            result=None if known else {"applied": False, "reason": "no handler for this message type"},
            normalised=",".join(env.normalised) or None,
        )
    )
    if delivery_id is None:
        return _Answer(200, "duplicate", _reply_for(env, org, {"status": "duplicate"}))
    context["delivery_id"] = str(delivery_id)
    if message_id is not None:
        _enqueue_in_background(request.app, delivery_id, message_id)
    return _Answer(200, "accepted", _reply_for(env, org, {"status": "accepted"}))


def _reply_for(env: Envelope, org: orgs.Org, default: dict[str, Any]) -> dict[str, Any]:
    if env.type == "assistant-request":
        # Vapi waits at most 7.5 s for this answer (FINDINGS.md §1); it is read from the org row.
        if org.vapi_assistant_id:
            return {"assistantId": org.vapi_assistant_id}
        return {"error": "no assistant is configured for this organization"}
    return default


async def _quarantine(
    pool: asyncpg.Pool, env: Envelope, invocations: list[ToolInvocation], context: dict[str, Any]
) -> _Answer:
    try:
        qid = await quarantine.insert(
            pool,
            event_type=env.type,
            event_id=env.message_key() if env.type in TOOL_TYPES else env.event_id(),
            assistant_id=env.assistant_id,
            phone_number_id=env.phone_number_id,
            payload=env.message,
        )
    except Exception as exc:
        if not is_data_error(exc):
            raise
        raise RowRefused(refusal_reason(exc)) from None
    context["quarantine_id"] = str(qid) if qid else None
    body: dict[str, Any] = {"status": "quarantined", "reason": "no organization matches this assistant or number"}
    if env.type == "tool-calls":
        body["results"] = [reply_entry(i, error="this line is not set up yet") for i in invocations]
    return _Answer(202, "unroutable", body)


async def _answer_tool_calls(
    request: web.Request, env: Envelope, org_id: uuid.UUID, invocations: list[ToolInvocation], context: dict[str, Any]
) -> _Answer:
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
        ),
    ]
    for invocation in invocations:
        rows.append(
            NewDelivery(
                org_id=org_id,
                event_type=env.type,
                event_id=tool_event_id(env, invocation),
                payload=env.tool_call_message(invocation),
                max_attempts=settings.retry_max_attempts,
                job_id=str(uuid.uuid4()) if invocation.is_async else None,
                answer_by=None if invocation.is_async else answer_by,
                normalised=normalised,
            )
        )
    try:
        ids = await deliveries.insert_many(pool, rows)
    except Exception as exc:
        if not is_data_error(exc):
            raise
        raise RowRefused(refusal_reason(exc)) from None
    entries: list[dict[str, Any]] = []
    duplicates = missed = 0
    for invocation, row, delivery_id in zip(invocations, rows[1:], ids[1:], strict=True):
        if invocation.is_async:
            if delivery_id is None:
                duplicates += 1
            else:
                _enqueue_in_background(request.app, delivery_id, str(row.job_id))
            entries.append(reply_entry(invocation, result="accepted"))
            continue
        if delivery_id is None:
            duplicates += 1
            stored = await deliveries.find(pool, org_id, row.event_id)
            delivery_id = stored.id if stored else None
        entry = await _run_or_await(pool, delivery_id, invocation, deadline_s) if delivery_id else None
        if entry is None:
            missed += 1
            entry = reply_entry(invocation, error=MISSED_REPLY)
        entries.append(entry)
    context["tool_calls"] = len(invocations)
    if missed:
        context["missed"] = missed
    outcome_label = "duplicate" if duplicates == len(invocations) else "accepted"
    if env.type == "function-call":
        only = entries[0]
        return _Answer(200, outcome_label, {"result": only.get("result", only.get("error", ""))})
    return _Answer(200, outcome_label, {"results": entries})


async def _run_or_await(
    pool: asyncpg.Pool, delivery_id: uuid.UUID, invocation: ToolInvocation, deadline_s: float
) -> dict[str, Any] | None:
    """Run the tool call here if nobody else is, else wait for the request that is; ``None`` if missed.

    A repeated request (Vapi's ``backoffPlan`` after a 503) may run a call the
    first request stored but never ran, as long as its caller still waits.
    """
    delay_s = 0.01
    while True:
        outcome = await run_sync_tool_call(pool, delivery_id, deadline_s=deadline_s)
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


def _enqueue_in_background(app: web.Application, delivery_id: uuid.UUID, message_id: str) -> None:
    task = asyncio.create_task(_enqueue(app, delivery_id, message_id))
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def _enqueue(app: web.Application, delivery_id: uuid.UUID, message_id: str) -> None:
    try:
        await app[ENQUEUER].enqueue(delivery_id, message_id)
    except redis.RedisError as exc:
        log.warning("delivery_enqueue_failed", delivery_id=str(delivery_id), error=str(exc))
        try:
            await deliveries.mark_not_enqueued(app[DB_POOL], [delivery_id])
        except UNAVAILABLE_ERRORS:
            # The row keeps enqueued_at; the sweeper resends it after resend_after_s.
            log.warning("delivery_enqueue_unrecorded", delivery_id=str(delivery_id))
