"""``POST /webhooks/vapi``: authenticate, parse, route, store once, enqueue, answer.

Nothing is acknowledged with a 2xx before it is committed to PostgreSQL; if
PostgreSQL is unreachable the answer is 503 and nothing is stored. Redis
is not on that path: the enqueue happens after the answer, and a failed one
leaves the row for the sweeper.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis
import structlog
from aiohttp import web

from db import deliveries, orgs, quarantine
from db.deliveries import NewDelivery
from db.pool import UNAVAILABLE_ERRORS
from ingest import auth, envelope, metrics
from ingest.appkeys import DB_POOL, ENQUEUER, PROCESSING, ROUTER, SETTINGS, TASKS, WRITER
from ingest.envelope import KNOWN_TYPES, TOOL_TYPES, Envelope, ToolInvocation
from workers.handlers.tools import reply_entry, tool_event_id
from workers.processing import COMPLETED, process_delivery

log = structlog.get_logger("ingest.receiver")

#: How long a duplicate tool call waits for the first copy's result, in seconds.
DUPLICATE_WAIT_S = 10.0


@dataclass
class _Answer:
    status: int
    outcome: str
    body: dict[str, Any]


class _Reject(Exception):
    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.answer = _Answer(status, outcome, {"error": reason})


async def receive_vapi(request: web.Request) -> web.Response:
    """Handle one server message; see the README's table of answers."""
    started = time.perf_counter()
    mtype: str | None = None
    context: dict[str, Any] = {}
    try:
        env = await _authenticated_envelope(request)
        mtype = env.type
        answer = await _store_and_answer(request, env, context)
    except _Reject as rej:
        answer = rej.answer
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
    return web.json_response(answer.body, status=answer.status)


async def _authenticated_envelope(request: web.Request) -> Envelope:
    settings = request.app[SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise _Reject(413, "too_large", f"body larger than {settings.max_body_bytes} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Reject(413, "too_large", f"body larger than {settings.max_body_bytes} bytes") from None
    try:
        auth.verify(settings, request.headers, body)
    except auth.Unauthorized as exc:
        raise _Reject(401, "unauthorized", str(exc)) from None
    if request.content_type != "application/json":
        raise _Reject(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        return envelope.parse(body)
    except envelope.InvalidEnvelope as exc:
        raise _Reject(400, "invalid", str(exc)) from None


async def _store_and_answer(request: web.Request, env: Envelope, context: dict[str, Any]) -> _Answer:
    settings = request.app[SETTINGS]
    pool = request.app[DB_POOL]
    if env.type in settings.ignored_types:
        return _Answer(200, "ignored", {})
    org = await request.app[ROUTER].route(env.assistant_id, env.phone_number_id)
    if org is None:
        return await _quarantine(pool, env, context)
    context["org_id"] = str(org.id)
    invocations = env.tool_invocations() if env.type in TOOL_TYPES else []
    if invocations:
        return await _answer_tool_calls(request, env, org.id, invocations, context)
    known = env.type in KNOWN_TYPES
    message_id = str(uuid.uuid4()) if known else None
    delivery_id = await request.app[WRITER].insert(
        NewDelivery(
            org_id=org.id,
            event_type=env.type,
            event_id=env.event_id(),
            payload=env.message,
            max_attempts=settings.retry_max_attempts,
            job_id=message_id,
            status=deliveries.PENDING if known else deliveries.COMPLETED,
            result=None if known else {"applied": False, "reason": "unhandled message type"},
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


async def _quarantine(pool: asyncpg.Pool, env: Envelope, context: dict[str, Any]) -> _Answer:
    qid = await quarantine.insert(
        pool,
        event_type=env.type,
        event_id=env.event_id() if env.type not in TOOL_TYPES else _quarantine_tool_key(env),
        assistant_id=env.assistant_id,
        phone_number_id=env.phone_number_id,
        payload=env.message,
    )
    context["quarantine_id"] = str(qid) if qid else None
    body: dict[str, Any] = {"status": "quarantined", "reason": "no organization matches this assistant or number"}
    if env.type == "tool-calls":
        body["results"] = [reply_entry(i, error="this line is not set up yet") for i in env.tool_invocations()]
    return _Answer(202, "unroutable", body)


def _quarantine_tool_key(env: Envelope) -> str:
    ids = sorted(i.tool_call_id or "" for i in env.tool_invocations())
    return "tool-calls:" + ",".join(ids) if any(ids) else env.event_id()


async def _answer_tool_calls(
    request: web.Request, env: Envelope, org_id: uuid.UUID, invocations: list[ToolInvocation], context: dict[str, Any]
) -> _Answer:
    """Store each tool call once, run new ones inline, and answer every one (FINDINGS.md §1)."""
    settings = request.app[SETTINGS]
    pool = request.app[DB_POOL]
    entries: list[dict[str, Any]] = []
    duplicates = 0
    for invocation in invocations:
        event_id = tool_event_id(env, invocation)
        delivery_id = await request.app[WRITER].insert(
            NewDelivery(org_id=org_id, event_type=env.type, event_id=event_id, payload=env.message,
                        max_attempts=settings.retry_max_attempts, job_id=None)  # fmt: skip
        )
        if delivery_id is not None:
            outcome = await process_delivery(pool, delivery_id, request.app[PROCESSING], final=True)
            if outcome.status == COMPLETED:
                entries.append(outcome.result)
                continue
        else:
            duplicates += 1
        entries.append(await _stored_tool_reply(pool, org_id, event_id, invocation))
    context["tool_calls"] = len(invocations)
    outcome_label = "duplicate" if duplicates == len(invocations) else "accepted"
    if env.type == "function-call":
        only = entries[0]
        return _Answer(200, outcome_label, {"result": only.get("result", only.get("error", ""))})
    return _Answer(200, outcome_label, {"results": entries})


async def _stored_tool_reply(
    pool: asyncpg.Pool, org_id: uuid.UUID, event_id: str, invocation: ToolInvocation
) -> dict[str, Any]:
    """The reply recorded for a tool call, waiting briefly while another request runs it."""
    deadline = time.monotonic() + DUPLICATE_WAIT_S
    delay_s = 0.01
    while True:
        stored = await deliveries.find(pool, org_id, event_id)
        if stored is not None and stored.status == deliveries.COMPLETED and isinstance(stored.result, dict):
            return stored.result
        if stored is not None and stored.status == deliveries.DEAD_LETTER:
            return reply_entry(invocation, error="this request could not be completed; our team has been alerted")
        if time.monotonic() >= deadline:
            return reply_entry(invocation, error="this request is still being processed; please try again")
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
