"""The admin API's endpoints under ``/api/webhook-metrics`` (the seeds' paths): statistics, failures, replay."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from db import deliveries, job_runs, reports
from db import reveals as reveals_db
from db.filters import DeliveryFilter, parse_time
from db.statuses import REPLAYABLE, DeliveryStatus
from ingest.admin import params
from ingest.admin.auth import json_response
from ingest.admin.openapi import OPENAPI
from ingest.appkeys import BROKER, DB_POOL, SETTINGS
from ingest.callers import caller, require_admin, session
from ingest.errors import Refused
from workers.broker import queue_stats
from workers.replay import REFUSED_TOOL_CALLS, replay


async def reveals(request: web.Request) -> web.Response:
    """The access record, newest first: who was shown patient data, when, what, how and from where. ``org_id``,
    ``by`` (a token id or text of the recorded name), ``since`` and ``until`` (ISO 8601 with zone), ``limit``
    (default 100). Admin tokens only: the record names operators and their addresses (tell a clinic from it)."""
    require_admin(request, "the access record")
    query = request.query
    org_id = params.uuid_value(query["org_id"], "org_id") if "org_id" in query else None
    since = parse_time(query["since"], "since") if "since" in query else None
    until = parse_time(query["until"], "until") if "until" in query else None
    limit = params.integer(request, "limit", 100, 1, 10_000)
    async with session(request) as conn:
        rows = await reveals_db.listing(
            conn, org_id=org_id, by=query.get("by") or None, since=since, until=until, limit=limit
        )
    return json_response({"items": rows})


async def queue_health(request: web.Request) -> web.Response:
    """Oldest pending age and deliveries by status; for the admin token also the Redis queues (depth, delayed,
    dead, worker heartbeats) and when each scheduler job last succeeded."""
    async with session(request) as conn:
        oldest = await deliveries.oldest_pending_age_s(conn)
        counts = await deliveries.count_by_status(conn)
        runs = await job_runs.last_runs(conn) if caller(request).org_id is None else None
    body: dict[str, Any] = {
        "oldest_pending_age_s": round(oldest, 3),
        "deliveries_by_status": counts,
        "queue": None,
        "scheduler": runs,
    }
    if caller(request).org_id is None:
        body["queue"] = await queue_stats(request.config_dict[BROKER])
    return json_response(body)


async def delivery_stats(request: web.Request) -> web.Response:
    """Per type over ``range``: received, completed, failed, dead-lettered, success rate, mean processing time."""
    since = params.since(request)
    async with session(request) as conn:
        return json_response({"since": since, "types": await reports.delivery_stats(conn, since)})


async def recent_failures(request: web.Request) -> web.Response:
    """The newest failed and dead-lettered deliveries (``limit``, default 20)."""
    limit = params.integer(request, "limit", 20, 1, 500)
    flt = DeliveryFilter(statuses=tuple(REPLAYABLE))
    async with session(request) as conn:
        return json_response({"items": await reports.list_deliveries(conn, flt, limit=limit)})


async def dead_letter_queue(request: web.Request) -> web.Response:
    """Dead letters, newest first, paginated with ``page`` and ``per_page``."""
    page = params.integer(request, "page", 1, 1, 100_000)
    per_page = params.integer(request, "per_page", 50, 1, 500)
    flt = DeliveryFilter(statuses=(DeliveryStatus.DEAD_LETTER,))
    async with session(request) as conn:
        total = await reports.count(conn, flt)
        items = await reports.list_deliveries(conn, flt, limit=per_page, offset=(page - 1) * per_page)
    return json_response({"items": items, "total": total, "page": page, "per_page": per_page})


async def processing_time(request: web.Request) -> web.Response:
    """p50/p95/p99 processing time per type over ``range``."""
    since = params.since(request)
    async with session(request) as conn:
        return json_response({"since": since, "types": await reports.processing_time(conn, since)})


async def _replay(request: web.Request, flt: DeliveryFilter, dry_run: bool) -> dict[str, Any]:
    default = () if flt.ids else tuple(REPLAYABLE)
    replayable = dataclasses.replace(flt, statuses=flt.statuses or default)
    async with session(request) as conn:
        matched, refused = await reports.replay_counts(conn, replayable)
    body: dict[str, Any] = {"matched": matched, "replayed": 0}
    if refused:
        body["refused_tool_calls"] = refused
        body["refused_reason"] = REFUSED_TOOL_CALLS
    if dry_run or matched == 0:
        return body
    body["replayed"] = await replay(
        request.config_dict[DB_POOL],
        request.config_dict[BROKER],
        replayable,
        budget=request.config_dict[SETTINGS].retry_max_attempts,
        org_scope=caller(request).org_id,
    )
    return body


async def retry_failed(request: web.Request) -> web.Response:
    """Replay one failed or dead-lettered delivery by id."""
    delivery_id = params.uuid_value(request.match_info["id"], "id")
    async with session(request) as conn:
        row = await reports.get_delivery(conn, delivery_id)
    if row is None:
        raise Refused(404, "no such delivery")
    if row["answer_by"] is not None:
        raise Refused(409, REFUSED_TOOL_CALLS)
    if row["status"] not in REPLAYABLE:
        raise Refused(409, f"delivery is {row['status']}; only failed and dead_letter deliveries are replayed")
    return json_response(await _replay(request, DeliveryFilter(ids=(delivery_id,)), False))


async def replay_deliveries(request: web.Request) -> web.Response:
    """Replay by filter (the CLI's): ``status``, ``org_id``, ``type``, ``since``, ``until``, ``error``, ``ids``, ``dry_run``."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise Refused(400, "body must be a JSON object (nested at most as deep as the parser allows)") from None
    if not isinstance(body, dict):
        raise Refused(400, "body must be a JSON object")
    unknown = set(body) - {"status", "org_id", "type", "since", "until", "error", "ids", "dry_run"}
    if unknown:
        raise Refused(400, f"unknown field {sorted(unknown)[0]!r}")
    return json_response(await _replay(request, params.replay_filter(body), bool(body.get("dry_run", False))))


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API."""
    return json_response(OPENAPI)
