"""``/console/access``: the access record for the admin, who was shown patient data, by clinic, person and time."""

from __future__ import annotations

import uuid

from aiohttp import web

from db import orgs
from db import reveals as reveals_db
from db.filters import InvalidFilter, parse_time
from ingest.callers import require_admin, session
from ingest.console.render import render

#: Accesses one page shows.
PAGE = 200


async def page(request: web.Request) -> web.Response:
    """``?org=<id>``, ``?by=`` (a token id or text of the recorded name), ``?since=``, ``?until=`` (ISO 8601
    with zone): the newest :data:`PAGE` accesses that match.

    Raises:
        web.HTTPForbidden: a clinic's session.
        web.HTTPBadRequest: a filter that is not an id or a time, with the reason.
    """
    require_admin(request, "the access record")
    query = request.query
    try:
        org_id = _uuid(query.get("org"))
        since = parse_time(query["since"], "since") if query.get("since") else None
        until = parse_time(query["until"], "until") if query.get("until") else None
    except (InvalidFilter, ValueError) as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    by = query.get("by", "").strip()[:200] or None
    async with session(request) as conn:
        rows = await reveals_db.listing(conn, org_id=org_id, by=by, since=since, until=until, limit=PAGE)
        clinics = await orgs.list_orgs(conn)
    filters = {"org": org_id, "by": by or "", "since": query.get("since", ""), "until": query.get("until", "")}
    return await render(request, "access.html", {"rows": rows, "clinics": clinics, "f": filters, "page": PAGE})


def _uuid(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ValueError(f"org must be a clinic id, got {raw[:64]!r}") from None
