"""The console's pages: overview, dead letters grouped by error, one delivery."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from db import console as console_db
from db import deliveries, job_runs, reports
from ingest.admin.auth import caller, session
from ingest.appkeys import BROKER
from ingest.console.signin import template_context
from workers.broker import queue_stats


async def _render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    base = template_context(request, await get_session(request))
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


async def overview(request: web.Request) -> web.Response:
    """Deliveries by status, dead letters, oldest pending age; for the admin also the queues and the scheduler."""
    admin = caller(request).org_id is None
    async with session(request) as conn:
        counts = await deliveries.count_by_status(conn)
        oldest_s = await deliveries.oldest_pending_age_s(conn)
        runs = await job_runs.last_runs(conn) if admin else {}
    queue = await queue_stats(request.config_dict[BROKER]) if admin else None
    return await _render(
        request, "overview.html", {"counts": counts, "oldest_s": oldest_s, "runs": runs, "queue": queue}
    )


async def dead_letters(request: web.Request) -> web.Response:
    """Dead letters grouped by error fingerprint; ``?group=`` lists one group's newest members."""
    group = request.query.get("group")
    async with session(request) as conn:
        groups = await console_db.dead_letter_groups(conn)
        members = await console_db.dead_letters_in_group(conn, group) if group else []
    chosen = next((g for g in groups if g["group"] == group), None)
    return await _render(request, "dead_letters.html", {"groups": groups, "chosen": chosen, "members": members})


async def delivery(request: web.Request) -> web.Response:
    """One delivery: status, attempts with every error, the payload (collapsed), timestamps."""
    try:
        delivery_id = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such delivery") from None
    async with session(request) as conn:
        row = await reports.get_delivery(conn, delivery_id)
    if row is None:
        # Another org's delivery looks exactly like one that does not exist.
        return await _render(request, "not_found.html", {"what": "delivery"}, status=404)
    return await _render(request, "delivery.html", {"d": row})
