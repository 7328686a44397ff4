"""``POST /webhooks/vapi``: authenticate, parse, route, store once, enqueue, answer.

Nothing is acknowledged with a 2xx before it is committed to PostgreSQL; if
PostgreSQL is unreachable the answer is 503 and nothing is stored. A
request's answer depends only on its own message: a message PostgreSQL
refuses gets 400 alone (:mod:`ingest.webhook.group_commit`). A synchronous tool call
runs only while its caller waits (:mod:`workers.inline`). Redis
is not on that path: each group-commit batch's deliveries are one message,
sent after the answers, and a failed send leaves the rows for the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from db import orgs, quarantine
from db.deliveries import NewDelivery
from db.statuses import DeliveryStatus
from ingest import metrics
from ingest.appkeys import DB_POOL, ROUTER, SETTINGS, WRITER
from ingest.errors import refusal_of
from ingest.webhook import auth
from ingest.webhook.answers import OUTCOME_HEADER, Answer, Reject
from ingest.webhook.tool_replies import answer_tool_calls
from workers import parsing
from workers.handlers import QUEUED_TYPES
from workers.messages import TOOL_TYPES, Envelope, InvalidEnvelope, ToolInvocation, reply_entry

log = structlog.get_logger("ingest.webhook.receiver")


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
    except Reject as rej:
        answer = rej.answer
        context["reason"] = rej.answer.body["error"]
    except Exception as exc:
        refused = refusal_of(exc, what="message")
        if refused is None:
            raise
        unavailable = refused.status == 503
        answer = Answer(refused.status, "unavailable" if unavailable else "unstorable", {"error": refused.reason})
        if unavailable:
            context["error"] = type(exc).__name__
        else:
            context["reason"] = refused.reason
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
    # The outcome in a header too: a tool-call reply's body is Vapi's shape alone, and `send` still says
    # which were duplicates.
    response = web.json_response(answer.body, status=answer.status, headers={OUTCOME_HEADER: answer.outcome})
    if answer.close:
        # Send the answer, then close at once: aiohttp would otherwise linger up to 10 s reading a body
        # that is not coming.
        response.force_close()
        # A client that left first (client_closed) is already counted and logged above, at INFO.
        with contextlib.suppress(ConnectionError):
            await response.prepare(request)
            await response.write_eof()
        request.protocol.force_close()
    return response


async def _authenticated_envelope(request: web.Request) -> Envelope:
    settings = request.app[SETTINGS]
    too_large = f"body larger than {settings.max_body_bytes} bytes"
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise Reject(413, "too_large", too_large, close=True)
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Reject(413, "too_large", too_large, close=True) from None
    except TimeoutError:
        raise Reject(
            408, "body_timeout", f"body not received within {settings.body_timeout_s:g} s", close=True
        ) from None
    except (ConnectionError, HttpProcessingError):
        # The client went away mid-body: nobody hears this answer, and it is not an outage.
        raise Reject(400, "client_closed", "the client closed the connection mid-body", close=True) from None
    try:
        auth.verify(settings, request.headers, body)
    except auth.Unauthorized as exc:
        raise Reject(401, "unauthorized", str(exc)) from None
    if request.content_type != "application/json":
        raise Reject(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        return parsing.parse(body)
    except InvalidEnvelope as exc:
        raise Reject(400, "invalid", str(exc)) from None


async def _store_and_answer(request: web.Request, env: Envelope, context: dict[str, Any]) -> Answer:
    settings = request.app[SETTINGS]
    pool = request.app[DB_POOL]
    if env.type in settings.ignored_types:
        return Answer(200, "ignored", {})
    invocations = env.tool_invocations() if env.type in TOOL_TYPES else []
    if len(invocations) > settings.max_tool_calls:
        raise Reject(
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
        return await answer_tool_calls(request, env, org.id, invocations, context)
    # A tool-call message without tool calls has nothing to run either.
    known = env.type in QUEUED_TYPES
    # A pending row is sent to the workers with the rest of its group-commit batch (ingest.webhook.group_commit).
    delivery_id = await request.app[WRITER].insert(
        NewDelivery(
            org_id=org.id,
            event_type=env.type,
            event_id=env.event_id(),
            payload=env.message,
            max_attempts=settings.retry_max_attempts,
            job_id=None,
            status=DeliveryStatus.PENDING if known else DeliveryStatus.COMPLETED,
            result=None if known else {"applied": False, "reason": "no handler for this message type"},
            normalised=",".join(env.normalised) or None,
            facts=env.facts(),
        )
    )
    if delivery_id is None:
        return Answer(200, "duplicate", _reply_for(env, org, {"status": "duplicate"}))
    context["delivery_id"] = str(delivery_id)
    return Answer(200, "accepted", _reply_for(env, org, {"status": "accepted"}))


def _reply_for(env: Envelope, org: orgs.Org, default: dict[str, Any]) -> dict[str, Any]:
    if env.type == "assistant-request":
        # Vapi waits at most 7.5 s for this answer (FINDINGS.md §1); it is read from the org row.
        if org.vapi_assistant_id:
            return {"assistantId": org.vapi_assistant_id}
        return {"error": "no assistant is configured for this organization"}
    return default


async def _quarantine(
    pool: asyncpg.Pool, env: Envelope, invocations: list[ToolInvocation], context: dict[str, Any]
) -> Answer:
    qid = await quarantine.insert(
        pool,
        event_type=env.type,
        event_id=env.message_key() if env.type in TOOL_TYPES else env.event_id(),
        assistant_id=env.assistant_id,
        phone_number_id=env.phone_number_id,
        payload=env.message,
    )
    context["quarantine_id"] = str(qid) if qid else None
    body: dict[str, Any] = {"status": "quarantined", "reason": "no organization matches this assistant or number"}
    if env.type == "tool-calls":
        body["results"] = [reply_entry(i, error="this line is not set up yet") for i in invocations]
    return Answer(202, "unroutable", body)
