"""The admin HTTP API under ``/api/webhook-metrics`` (the seeds' paths), JSON, bearer tokens.

``ADMIN_TOKEN`` sees every org. Org-scoped tokens (``vapi-ingest tokens
create``, stored as SHA-256) see only their org: every query they cause runs
inside :func:`db.tenancy.tenant_scope`, so PostgreSQL's row-level security,
not a WHERE clause, keeps them out of other orgs' rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from db import deliveries, reports, tokens
from db.filters import DeliveryFilter, InvalidFilter, parse_time
from db.pool import UNAVAILABLE_ERRORS
from db.statuses import REPLAYABLE, DeliveryStatus
from db.tenancy import tenant_scope
from db.types import Conn
from ingest.appkeys import BROKER, DB_POOL, SETTINGS
from ingest.openapi import OPENAPI
from workers.broker import QUEUE_NAME
from workers.replay import REFUSED_TOOL_CALLS, replay

RANGE_PATTERN = re.compile(r"^(\d{1,4})([mhd])$")
RANGE_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
#: The longest ``range`` accepted.
MAX_RANGE = timedelta(days=90)


class ApiError(Exception):
    """An error answer: HTTP status and a reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who is asking: ``org_id`` is None for the admin token (all orgs)."""

    org_id: uuid.UUID | None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=functools.partial(json.dumps, default=_json_default))


async def _caller(request: web.Request) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token")
    admin = request.app[SETTINGS].admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Caller(None)
    org_id = await tokens.org_of(request.app[DB_POOL], token)
    if org_id is None:
        raise ApiError(401, "invalid token")
    return Caller(org_id)


@asynccontextmanager
async def _session(request: web.Request, caller: Caller) -> AsyncIterator[Conn]:
    """A transaction acting for the caller: the whole service for admin, one org under RLS otherwise."""
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        if caller.org_id is None:
            yield conn
        else:
            async with tenant_scope(conn, caller.org_id):
                yield conn


Handler = Callable[[web.Request, Caller], Awaitable[web.Response]]


def endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Authenticate, run, and turn :class:`ApiError` / :class:`InvalidFilter` into JSON errors."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.Response:
        try:
            return await handler(request, await _caller(request))
        except ApiError as exc:
            return _json({"error": str(exc)}, exc.status)
        except InvalidFilter as exc:
            return _json({"error": str(exc)}, 400)
        except UNAVAILABLE_ERRORS:
            return _json({"error": "database unavailable, retry later"}, 503)

    return run


def _since(request: web.Request) -> datetime:
    raw = request.query.get("range", "24h")
    match = RANGE_PATTERN.match(raw)
    if not match:
        raise ApiError(400, f"range must look like 30m, 24h or 7d, got {raw!r}")
    span = timedelta(**{RANGE_UNITS[match.group(2)]: int(match.group(1))})
    if not timedelta(0) < span <= MAX_RANGE:
        raise ApiError(400, f"range must be between 1m and {MAX_RANGE.days}d")
    return datetime.now(UTC) - span


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def _uuid(raw: Any, name: str) -> uuid.UUID:
    if not isinstance(raw, str):
        raise ApiError(400, f"{name} must be a UUID string")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a UUID, got {raw[:64]!r}") from None


@endpoint
async def queue_health(request: web.Request, caller: Caller) -> web.Response:
    """Redis queue depth, delayed and dead counts, worker heartbeats (admin only), and oldest pending age."""
    async with _session(request, caller) as conn:
        oldest = await deliveries.oldest_pending_age_s(conn)
        counts = await deliveries.count_by_status(conn)
    body: dict[str, Any] = {"oldest_pending_age_s": round(oldest, 3), "deliveries_by_status": counts, "queue": None}
    if caller.org_id is None:
        body["queue"] = await _redis_queue(request)
    return _json(body)


async def _redis_queue(request: web.Request) -> dict[str, Any] | None:
    broker = request.app[BROKER]
    client = getattr(broker, "client", None)
    if client is None:
        return None
    ns = f"{broker.namespace}:{QUEUE_NAME}"  # type: ignore[attr-defined]

    def read() -> dict[str, Any]:
        pipe = client.pipeline()
        pipe.llen(ns)
        pipe.llen(f"{ns}.DQ")
        pipe.zcard(f"{ns}.XQ")
        pipe.zrange(f"{broker.namespace}:__heartbeats__", 0, -1, withscores=True)  # type: ignore[attr-defined]
        depth, delayed, dead, beats = pipe.execute()
        now_ms = datetime.now(UTC).timestamp() * 1000
        workers = [{"id": w.decode(), "last_seen_s_ago": round((now_ms - score) / 1000, 1)} for w, score in beats]
        return {"name": QUEUE_NAME, "depth": depth, "delayed": delayed, "dead": dead, "workers": workers}

    try:
        return await asyncio.to_thread(read)
    except Exception as exc:  # noqa: BLE001 - report Redis trouble, do not fail the endpoint
        return {"name": QUEUE_NAME, "error": f"redis unavailable: {type(exc).__name__}"}


@endpoint
async def delivery_stats(request: web.Request, caller: Caller) -> web.Response:
    """Per type over ``range``: received, completed, failed, dead-lettered, success rate, mean processing time."""
    since = _since(request)
    async with _session(request, caller) as conn:
        return _json({"since": since, "types": await reports.delivery_stats(conn, since)})


@endpoint
async def recent_failures(request: web.Request, caller: Caller) -> web.Response:
    """The newest failed and dead-lettered deliveries (``limit``, default 20)."""
    limit = _int(request, "limit", 20, 1, 500)
    flt = DeliveryFilter(statuses=tuple(REPLAYABLE))
    async with _session(request, caller) as conn:
        return _json({"items": await reports.list_deliveries(conn, flt, limit=limit)})


@endpoint
async def dead_letter_queue(request: web.Request, caller: Caller) -> web.Response:
    """Dead letters, newest first, paginated with ``page`` and ``per_page``."""
    page = _int(request, "page", 1, 1, 100_000)
    per_page = _int(request, "per_page", 50, 1, 500)
    flt = DeliveryFilter(statuses=(DeliveryStatus.DEAD_LETTER,))
    async with _session(request, caller) as conn:
        total = await reports.count(conn, flt)
        items = await reports.list_deliveries(conn, flt, limit=per_page, offset=(page - 1) * per_page)
    return _json({"items": items, "total": total, "page": page, "per_page": per_page})


@endpoint
async def processing_time(request: web.Request, caller: Caller) -> web.Response:
    """p50/p95/p99 processing time per type over ``range``."""
    since = _since(request)
    async with _session(request, caller) as conn:
        return _json({"since": since, "types": await reports.processing_time(conn, since)})


async def _replay(request: web.Request, caller: Caller, flt: DeliveryFilter, dry_run: bool) -> dict[str, Any]:
    default = () if flt.ids else tuple(REPLAYABLE)
    replayable = dataclasses.replace(flt, statuses=flt.statuses or default)
    async with _session(request, caller) as conn:
        matched, refused = await reports.replay_counts(conn, replayable)
    body: dict[str, Any] = {"matched": matched, "replayed": 0}
    if refused:
        body["refused_tool_calls"] = refused
        body["refused_reason"] = REFUSED_TOOL_CALLS
    if dry_run or matched == 0:
        return body
    body["replayed"] = await replay(
        request.app[DB_POOL],
        request.app[BROKER],
        replayable,
        budget=request.app[SETTINGS].retry_max_attempts,
        org_scope=caller.org_id,
    )
    return body


@endpoint
async def retry_failed(request: web.Request, caller: Caller) -> web.Response:
    """Replay one failed or dead-lettered delivery by id."""
    delivery_id = _uuid(request.match_info["id"], "id")
    async with _session(request, caller) as conn:
        row = await reports.get_delivery(conn, delivery_id)
    if row is None:
        raise ApiError(404, "no such delivery")
    if row["answer_by"] is not None:
        raise ApiError(409, REFUSED_TOOL_CALLS)
    if row["status"] not in REPLAYABLE:
        raise ApiError(409, f"delivery is {row['status']}; only failed and dead_letter deliveries are replayed")
    return _json(await _replay(request, caller, DeliveryFilter(ids=(delivery_id,)), False))


@endpoint
async def replay_deliveries(request: web.Request, caller: Caller) -> web.Response:
    """Replay by filter (the CLI's): ``status``, ``org_id``, ``type``, ``since``, ``until``, ``error``, ``ids``, ``dry_run``."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise ApiError(400, "body must be a JSON object (nested at most as deep as the parser allows)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    unknown = set(body) - {"status", "org_id", "type", "since", "until", "error", "ids", "dry_run"}
    if unknown:
        raise ApiError(400, f"unknown field {sorted(unknown)[0]!r}")
    return _json(await _replay(request, caller, _filter_from(body), bool(body.get("dry_run", False))))


def _filter_from(body: dict[str, Any]) -> DeliveryFilter:
    status = body.get("status")
    if status is None:
        statuses: tuple[Any, ...] = ()
    elif isinstance(status, str):
        statuses = (status,)
    elif isinstance(status, list):
        statuses = tuple(status)
    else:
        raise ApiError(400, "status must be a string or a list of strings")
    if not all(isinstance(s, str) for s in statuses):
        raise ApiError(400, "status must be a string or a list of strings")
    if any(s not in REPLAYABLE for s in statuses):
        raise ApiError(400, "status must be failed or dead_letter (only those are replayed)")
    ids = body.get("ids") or []
    if not isinstance(ids, list):
        raise ApiError(400, "ids must be a list of UUIDs")
    if not statuses and not ids:
        raise ApiError(400, "give status or ids")
    for name in ("type", "error", "since", "until"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ApiError(400, f"{name} must be a string")
    return DeliveryFilter(
        statuses=statuses,
        org_id=_uuid(body["org_id"], "org_id") if body.get("org_id") else None,
        event_type=body.get("type"),
        since=parse_time(body["since"], "since") if body.get("since") else None,
        until=parse_time(body["until"], "until") if body.get("until") else None,
        error=body.get("error"),
        ids=tuple(_uuid(i, "ids[]") for i in ids),
    )


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 document of this API."""
    return _json(OPENAPI)


def add_routes(app: web.Application) -> None:
    """Mount the admin API on ``app``."""
    prefix = "/api/webhook-metrics"
    app.router.add_get(f"{prefix}/queue-health", queue_health)
    app.router.add_get(f"{prefix}/delivery-stats", delivery_stats)
    app.router.add_get(f"{prefix}/recent-failures", recent_failures)
    app.router.add_get(f"{prefix}/dead-letter-queue", dead_letter_queue)
    app.router.add_get(f"{prefix}/processing-time", processing_time)
    app.router.add_post(f"{prefix}/retry-failed/{{id}}", retry_failed)
    app.router.add_post(f"{prefix}/replay", replay_deliveries)
    app.router.add_get("/api/openapi.json", openapi)
