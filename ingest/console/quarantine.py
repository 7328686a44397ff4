"""Console quarantine (admin only): unroutable messages grouped by sender, mapped and routed as a group."""

from __future__ import annotations

import uuid

from aiohttp import web

from db import orgs
from db import quarantine as quarantine_db
from db.errors import AlreadyMapped, OrgNotFound
from db.types import OrgId
from ingest.appkeys import BROKER, DB_POOL, SETTINGS
from ingest.callers import require_admin
from ingest.console.render import render
from ingest.console.urls import PREFIX
from workers.quarantine import route_sender

#: Senders the page lists at most, largest first.
SENDER_LIMIT = 100
#: Quarantined messages belong to no clinic yet, so no clinic's token may see them.
WHAT = "the quarantine (its messages belong to no clinic yet)"


async def _page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    pool = request.config_dict[DB_POOL]
    context = {
        "senders": await quarantine_db.senders(pool, limit=SENDER_LIMIT),
        "sender_limit": SENDER_LIMIT,
        "unrouted": await quarantine_db.count_unrouted(pool),
        "orgs": await orgs.list_orgs(pool),
        "routed": request.query.get("routed"),
        "error": error,
    }
    return await render(request, "quarantine.html", context, status)


async def page(request: web.Request) -> web.Response:
    """Unroutable messages by assistant id / phone number id, each group with "map to org"."""
    require_admin(request, WHAT)
    return await _page(request)


async def confirm(request: web.Request) -> web.Response:
    """GET: what mapping this sender to the chosen clinic would do (the mapping, the messages it moves), with
    the button that does it; nothing changes until that POST."""
    require_admin(request, WHAT)
    assistant_id = request.query.get("assistant_id") or None
    phone_number_id = request.query.get("phone_number_id") or None
    try:
        org_id = uuid.UUID(request.query.get("org_id", ""))
    except ValueError:
        return await _page(request, error="choose a clinic to map this sender to", status=400)
    if not (assistant_id or phone_number_id):
        return await _page(request, error="this group has no assistant or phone number id to map", status=400)
    pool = request.config_dict[DB_POOL]
    org = await orgs.get_org(pool, org_id)
    if org is None:
        return await _page(request, error=f"no organization with id {org_id}", status=404)
    moving = await quarantine_db.count_unrouted(pool, assistant_id=assistant_id, phone_number_id=phone_number_id)
    context = {"org": org, "assistant_id": assistant_id, "phone_number_id": phone_number_id, "moving": moving}
    return await render(request, "quarantine_confirm.html", context)


async def route(request: web.Request) -> web.Response:
    """Map one sender to an org and move exactly its messages into that org's delivery log."""
    require_admin(request, WHAT)
    form = await request.post()
    assistant_id = str(form.get("assistant_id", "")) or None
    phone_number_id = str(form.get("phone_number_id", "")) or None
    try:
        org_id = uuid.UUID(str(form.get("org_id", "")))
    except ValueError:
        return await _page(request, error="choose an organization", status=400)
    if not (assistant_id or phone_number_id):
        return await _page(request, error="this group has no assistant or phone number id to map", status=400)
    try:
        routed = await route_sender(
            request.config_dict[DB_POOL],
            request.config_dict[BROKER],
            OrgId(org_id),
            max_attempts=request.config_dict[SETTINGS].retry_max_attempts,
            assistant_id=assistant_id,
            phone_number_id=phone_number_id,
        )
    except (AlreadyMapped, OrgNotFound) as exc:
        return await _page(request, error=str(exc), status=409)
    raise web.HTTPFound(f"{PREFIX}/quarantine?routed={routed.moved}")
