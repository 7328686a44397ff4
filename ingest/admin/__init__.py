"""The admin HTTP API: an aiohttp sub-app under ``/api`` with bearer-token auth as its middleware.

Mounted by :func:`ingest.app.create_app`; reads the parent app's pool,
settings and broker through ``request.config_dict``.
"""

from __future__ import annotations

from aiohttp import web

from ingest.admin import routes, tenants
from ingest.admin.auth import auth_and_errors


def create_admin_app() -> web.Application:
    """The sub-app to mount at ``/api``: ``/api/webhook-metrics/...``, tenants (``/api/orgs``,
    ``/api/assistants``, ``/api/phone-numbers``, ``/api/tokens``) and ``/api/openapi.json``."""
    app = web.Application(middlewares=[auth_and_errors])
    prefix = "/webhook-metrics"
    app.router.add_get(f"{prefix}/queue-health", routes.queue_health)
    app.router.add_get(f"{prefix}/delivery-stats", routes.delivery_stats)
    app.router.add_get(f"{prefix}/recent-failures", routes.recent_failures)
    app.router.add_get(f"{prefix}/dead-letter-queue", routes.dead_letter_queue)
    app.router.add_get(f"{prefix}/processing-time", routes.processing_time)
    app.router.add_post(f"{prefix}/retry-failed/{{id}}", routes.retry_failed)
    app.router.add_post(f"{prefix}/replay", routes.replay_deliveries)
    app.router.add_get("/openapi.json", routes.openapi)
    app.router.add_get("/reveals", routes.reveals)
    tenants.add_routes(app)
    return app
