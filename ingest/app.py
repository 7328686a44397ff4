"""The aiohttp application factory, its resources, and the health and metrics endpoints."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import dramatiq
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from db import health as db_health
from db import migrate
from db.pool import UNAVAILABLE_ERRORS, create_pool
from ingest import metrics
from ingest.admin import create_admin_app
from ingest.appkeys import (
    BROKER,
    DB_POOL,
    ENQUEUER,
    PROCESSING,
    REPLAY_WAKE,
    ROUTER,
    SETTINGS,
    STARTED_AT,
    TASKS,
    WRITER,
)
from ingest.configs import processing_config
from ingest.settings import Settings
from ingest.webhook.background import enqueue_in_background
from ingest.webhook.group_commit import GroupCommitWriter
from ingest.webhook.receiver import receive_vapi
from ingest.webhook.routing import Router
from workers import replay_runs
from workers.admission import Admission
from workers.broker import build_broker
from workers.enqueuer import AsyncEnqueuer

log = structlog.get_logger("ingest.app")
#: Seconds a readiness probe waits on each dependency.
PROBE_TIMEOUT_S = 2.0


def create_app(settings: Settings, *, broker: dramatiq.Broker | None = None) -> web.Application:
    """Build the web application.

    Args:
        broker: The Dramatiq broker to enqueue on; a Redis broker on
            ``settings.redis_url`` if omitted.
    """
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[BROKER] = broker or build_broker(settings.redis_url)
    app[PROCESSING] = processing_config(settings)
    app[TASKS] = set()
    app[STARTED_AT] = time.monotonic()
    app[REPLAY_WAKE] = asyncio.Event()
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_drain_tasks)
    app.router.add_post("/webhooks/vapi", receive_vapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_endpoint)
    app.add_subapp("/api", create_admin_app())
    if settings.console_enabled:
        from ingest.console import create_console_app
        from ingest.console.urls import PREFIX

        # Without a configured key, each process makes its own: sessions end when it restarts.
        app.add_subapp(PREFIX, create_console_app(settings.console_session_key or os.urandom(32)))
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """The pool, and what writes and routes through it: group commit, the routing cache, the enqueuer."""
    settings = app[SETTINGS]
    # min_size=0: the web process starts (and answers 503) even while PostgreSQL is down.
    # command_timeout bounds every statement on an open connection, which a frozen server would otherwise
    # hold for as long as it is frozen (a new connection is bounded by timeout already).
    pool = await create_pool(
        settings.database_url,
        min_size=0,
        max_size=settings.db_pool_max_size,
        timeout=PROBE_TIMEOUT_S,
        command_timeout=settings.db_command_timeout_s,
    )
    app[DB_POOL] = pool
    app[ROUTER] = Router(pool, settings.default_org_id)
    app[WRITER] = GroupCommitWriter(
        pool,
        lambda ids, message_id, lane: enqueue_in_background(app, ids, message_id, lane),
        admission=Admission(settings.org_live_rate_per_s, settings.org_live_burst),
    )
    app[ENQUEUER] = AsyncEnqueuer(app[BROKER], settings.redis_url)  # type: ignore[arg-type]
    runner = None
    if settings.console_enabled:
        # Console replays run here, under a lease: one this process was running when it stopped is
        # taken up by any web process (this one after a restart) once the lease runs out.
        runner = asyncio.create_task(
            replay_runs.resume_forever(pool, app[BROKER], budget=settings.retry_max_attempts, wake=app[REPLAY_WAKE])
        )
    yield
    if runner is not None:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    await app[ENQUEUER].close()
    await pool.close()


async def _drain_tasks(app: web.Application) -> None:
    if app[TASKS]:
        await asyncio.gather(*app[TASKS], return_exceptions=True)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def _check_database(app: web.Application) -> tuple[bool, list[str]]:
    try:
        async with app[DB_POOL].acquire(timeout=PROBE_TIMEOUT_S) as conn:
            return True, await asyncio.wait_for(migrate.pending(conn), PROBE_TIMEOUT_S)
    except UNAVAILABLE_ERRORS:
        return False, []


async def _check_redis(app: web.Application) -> bool:
    try:
        client = app[BROKER].client  # type: ignore[attr-defined]
    except AttributeError:
        return True  # a stub broker in tests has no Redis behind it
    try:
        return bool(await asyncio.wait_for(asyncio.to_thread(client.ping), PROBE_TIMEOUT_S))
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


async def readyz(request: web.Request) -> web.Response:
    """Readiness: PostgreSQL and Redis reachable, and no migration pending."""
    (db_ok, pending), redis_ok = await asyncio.gather(_check_database(request.app), _check_redis(request.app))
    ready = db_ok and redis_ok and not pending
    body = {"ready": ready, "database": db_ok, "redis": redis_ok, "pending_migrations": pending}
    return web.json_response(body, status=200 if ready else 503)


async def health(request: web.Request) -> web.Response:
    """The seeds' health shape: status, database_size_mb, services, uptime, timestamp."""
    app = request.app
    size_mb = None
    try:
        async with app[DB_POOL].acquire(timeout=PROBE_TIMEOUT_S) as conn:
            size = await db_health.database_size_bytes(conn)
            size_mb = round(size / 1_048_576, 1)
    except UNAVAILABLE_ERRORS:
        pass
    redis_ok = await _check_redis(app)
    ok = size_mb is not None and redis_ok
    body = {
        "status": "ok" if ok else "degraded",
        "database_size_mb": size_mb,
        "services": {"database": size_mb is not None, "redis": redis_ok},
        "uptime": round(time.monotonic() - app[STARTED_AT], 1),
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return web.json_response(body, status=200 if ok else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus exposition; PostgreSQL-backed gauges are refreshed first (kept stale if it is down)."""
    try:
        await asyncio.wait_for(metrics.refresh_db_gauges(request.app[DB_POOL]), PROBE_TIMEOUT_S)
    except UNAVAILABLE_ERRORS:
        log.warning("metrics_db_gauges_stale")
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
