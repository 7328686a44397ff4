"""Console clinics (admin only): every org with its settings, assistants, numbers and tokens; create, edit,
revoke. Validation is :mod:`ingest.org_fields`, as in the CLI and the admin API."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from db import orgs, tokens
from db.errors import AlreadyMapped
from ingest import org_fields
from ingest.admin.auth import caller
from ingest.appkeys import DB_POOL
from ingest.console.signin import PREFIX, template_context


def _admin_only(request: web.Request) -> None:
    if caller(request).org_id is not None:
        raise web.HTTPForbidden(text="managing clinics needs the admin token")


def _org_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such clinic") from None


async def _render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    base = template_context(request, await get_session(request))
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


async def list_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    """Every clinic with its time zone, region, hours and counts; a form to create one."""
    _admin_only(request)
    rows = await orgs.list_orgs(request.config_dict[DB_POOL])
    return await _render(request, "clinics.html", {"clinics": rows, "error": error}, status)


async def create(request: web.Request) -> web.Response:
    """Create a clinic from the form (name, time zone, region); then open it."""
    _admin_only(request)
    form = await request.post()
    try:
        name = org_fields.name(str(form.get("name", "")))
        tz = org_fields.timezone(str(form.get("timezone", "UTC")) or "UTC")
        region = org_fields.region(str(form.get("region", "US")) or "US")
    except ValueError as exc:
        return await list_page(request, error=str(exc), status=400)
    org_id = await orgs.create_org(request.config_dict[DB_POOL], name=name, timezone=tz, region=region)
    raise web.HTTPFound(f"{PREFIX}/clinics/{org_id}")


async def show(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    """One clinic: settings (editable), assistants, numbers, tokens (revocable)."""
    _admin_only(request)
    async with request.config_dict[DB_POOL].acquire() as conn:
        detail = await orgs.org_detail(conn, _org_id(request))
    if detail is None:
        return await _render(request, "not_found.html", {"what": "clinic"}, status=404)
    return await _render(request, "clinic.html", {"c": detail, "error": error}, status)


async def update(request: web.Request) -> web.Response:
    """Change name, time zone, region or the assistant answering assistant-request."""
    _admin_only(request)
    org_id = _org_id(request)
    form = await request.post()
    changes: dict[str, Any] = {}
    try:
        changes["name"] = org_fields.name(str(form.get("name", "")))
        changes["timezone"] = org_fields.timezone(str(form.get("timezone", "")))
        changes["default_region"] = org_fields.region(str(form.get("region", "")))
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


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke one of the clinic's tokens: refused from its next request, console sessions included."""
    _admin_only(request)
    org_id = _org_id(request)
    try:
        token_id = uuid.UUID(str((await request.post()).get("token_id", "")))
    except ValueError:
        raise web.HTTPBadRequest(text="token_id must be a token's id") from None
    await tokens.revoke(request.config_dict[DB_POOL], token_id)
    raise web.HTTPFound(f"{PREFIX}/clinics/{org_id}")
