"""Console clinics (admin only): every org with its settings, assistants, numbers and tokens; create, edit,
revoke. Validation is :mod:`ingest.org_fields`, as in the CLI and the admin API."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from db import orgs, tokens
from db.errors import AlreadyMapped
from ingest import org_fields
from ingest.appkeys import DB_POOL
from ingest.callers import require_admin
from ingest.console.render import render
from ingest.console.urls import PREFIX, path_id
from workers.hours import WEEKDAYS

WHAT = "managing clinics"


#: What the "new clinic" form shows before anything is typed.
NEW_CLINIC = {"name": "", "timezone": "UTC", "region": "US"}


async def list_page(
    request: web.Request, *, error: str | None = None, status: int = 200, entered: dict[str, str] | None = None
) -> web.Response:
    """Every clinic with its time zone, region, hours and counts; a form to create one (holding ``entered``,
    what the operator typed, when it was refused)."""
    require_admin(request, WHAT)
    rows = await orgs.list_orgs(request.config_dict[DB_POOL])
    context = {"clinics": rows, "error": error, "entered": entered or NEW_CLINIC}
    return await render(request, "clinics.html", context, status)


async def create(request: web.Request) -> web.Response:
    """Create a clinic from the form (name, time zone, region); then open it."""
    require_admin(request, WHAT)
    form = await request.post()
    entered = {key: str(form.get(key, default)) for key, default in NEW_CLINIC.items()}
    try:
        name = org_fields.name(entered["name"])
        tz = org_fields.timezone(entered["timezone"] or "UTC")
        region = org_fields.region(entered["region"] or "US")
    except ValueError as exc:
        # The form comes back as typed, so fixing one field does not mean typing the others again.
        return await list_page(request, error=str(exc), status=400, entered=entered)
    org_id = await orgs.create_org(request.config_dict[DB_POOL], name=name, timezone=tz, region=region)
    raise web.HTTPFound(f"{PREFIX}/clinics/{org_id}")


async def show(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    """One clinic: settings (editable), assistants, numbers, tokens (revocable)."""
    require_admin(request, WHAT)
    async with request.config_dict[DB_POOL].acquire() as conn:
        detail = await orgs.org_detail(conn, path_id(request, "clinic"))
    if detail is None:
        return await render(request, "not_found.html", {"what": "clinic"}, status=404)
    return await render(request, "clinic.html", {"c": detail, "error": error}, status)


async def update(request: web.Request) -> web.Response:
    """Change name, time zone, region, business hours (a day left empty is closed), or the assistant answering
    assistant-request."""
    require_admin(request, WHAT)
    org_id = path_id(request, "clinic")
    form = await request.post()
    changes: dict[str, Any] = {}
    try:
        changes["name"] = org_fields.name(str(form.get("name", "")))
        changes["timezone"] = org_fields.timezone(str(form.get("timezone", "")))
        changes["default_region"] = org_fields.region(str(form.get("region", "")))
        if any(f"hours_{day}" in form for day in WEEKDAYS):
            changes["business_hours"] = _hours(form)
    except ValueError as exc:
        return await show(request, error=str(exc), status=400)
    assistant = str(form.get("assistant_id", "")).strip()
    changes["vapi_assistant_id"] = assistant or None
    async with request.config_dict[DB_POOL].acquire() as conn:
        try:
            await orgs.update_org(conn, org_id, changes)
        except AlreadyMapped as exc:
            return await show(request, error=str(exc), status=409)
    raise web.HTTPFound(f"{PREFIX}/clinics/{org_id}")


def _hours(form: Any) -> dict[str, list[str]]:
    """Business hours from the fields ``hours_mon`` .. ``hours_sun``: ``09:00-17:00``, or empty for closed.

    Raises:
        ValueError: a malformed span, naming the day (:func:`ingest.org_fields.hours_changes`).
    """
    spans = {day: str(form.get(f"hours_{day}", "")).strip() for day in WEEKDAYS}
    return org_fields.hours_changes(
        {}, tuple(f"{day}={span}" for day, span in spans.items() if span), tuple(d for d, s in spans.items() if not s)
    )


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke one of the clinic's tokens: refused from its next request, console sessions included."""
    require_admin(request, WHAT)
    org_id = path_id(request, "clinic")
    try:
        token_id = uuid.UUID(str((await request.post()).get("token_id", "")))
    except ValueError:
        raise web.HTTPBadRequest(text="token_id must be a token's id") from None
    await tokens.revoke(request.config_dict[DB_POOL], token_id)
    raise web.HTTPFound(f"{PREFIX}/clinics/{org_id}")
