"""Tenant endpoints of the admin API (admin token only): orgs, assistant and phone-number mappings, org tokens.

The same operations as the CLI's ``orgs``, ``agents``, ``numbers`` and ``tokens``
commands, validated by the same :mod:`ingest.org_fields`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from db import orgs, tokens
from db.errors import AlreadyMapped, OrgNotFound
from ingest import org_fields
from ingest.admin import params
from ingest.admin.auth import json_response
from ingest.callers import require_admin, session
from ingest.errors import Refused


def _assistant_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty (null clears it)")
    return value


#: Body fields of POST/PATCH /api/orgs and how each is checked.
_ORG_FIELDS: dict[str, Callable[[Any], Any]] = {
    "name": org_fields.name,
    "timezone": org_fields.timezone,
    "default_region": org_fields.region,
    "business_hours": org_fields.business_hours,
    "vapi_assistant_id": _assistant_id,
}
#: URL segment -> routing kind of :data:`db.orgs.ROUTE_TABLES`, and the body field naming the Vapi id.
ROUTE_KINDS = {"assistants": ("assistant", "assistant_id"), "phone-numbers": ("phone number", "phone_number_id")}


async def _object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):
        raise Refused(400, "body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Refused(400, "body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise Refused(400, f"unknown field {sorted(unknown)[0]!r}")
    return body


def _org_changes(body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key == "vapi_assistant_id" and value is None:
            changes[key] = None
            continue
        if key != "business_hours" and not isinstance(value, str):
            raise Refused(400, f"{key} must be a string")
        try:
            changes[key] = _ORG_FIELDS[key](value)
        except ValueError as exc:
            raise Refused(400, f"{key}: {exc}") from None
    return changes


async def list_orgs(request: web.Request) -> web.Response:
    """Every org with its settings and counts of assistants, numbers and live tokens."""
    require_admin(request, "tenant management")
    async with session(request) as conn:
        return json_response({"items": await orgs.list_orgs(conn)})


async def create_org(request: web.Request) -> web.Response:
    """Create an org from ``{name, timezone?, default_region?, vapi_assistant_id?, business_hours?}``; 201."""
    require_admin(request, "tenant management")
    changes = _org_changes(await _object(request, set(_ORG_FIELDS)))
    if "name" not in changes:
        raise Refused(400, "name is required")
    async with session(request) as conn:
        org_id = await orgs.create_org(conn, name=changes.pop("name"))
        try:
            await orgs.update_org(conn, org_id, changes)
        except AlreadyMapped as exc:
            raise Refused(409, str(exc)) from None
        return json_response(await orgs.org_detail(conn, org_id), 201)


async def show_org(request: web.Request) -> web.Response:
    """One org with its assistants, phone numbers and tokens (never a token's value)."""
    require_admin(request, "tenant management")
    org_id = params.uuid_value(request.match_info["org_id"], "org_id")
    async with session(request) as conn:
        detail = await orgs.org_detail(conn, org_id)
    if detail is None:
        raise Refused(404, "no such organization")
    return json_response(detail)


async def update_org(request: web.Request) -> web.Response:
    """Change some of ``name``, ``timezone``, ``default_region``, ``vapi_assistant_id`` (null clears), ``business_hours``."""
    require_admin(request, "tenant management")
    org_id = params.uuid_value(request.match_info["org_id"], "org_id")
    changes = _org_changes(await _object(request, set(_ORG_FIELDS)))
    async with session(request) as conn:
        try:
            found = await orgs.update_org(conn, org_id, changes)
        except AlreadyMapped as exc:
            raise Refused(409, str(exc)) from None
        if not found:
            raise Refused(404, "no such organization")
        return json_response(await orgs.org_detail(conn, org_id))


def _kind(request: web.Request) -> tuple[str, str]:
    # "/api/assistants/..." -> "assistants"
    return ROUTE_KINDS[request.path.split("/")[2]]


async def list_routes(request: web.Request) -> web.Response:
    """Assistant or phone-number mappings, optionally of one ``org_id``."""
    require_admin(request, "tenant management")
    kind, _ = _kind(request)
    raw = request.query.get("org_id")
    org_id = params.uuid_value(raw, "org_id") if raw else None
    async with session(request) as conn:
        return json_response({"items": await orgs.list_routes(conn, kind, org_id)})


async def add_route(request: web.Request) -> web.Response:
    """Map ``{org_id, assistant_id | phone_number_id}``; 201 with the mapping's id, 409 if mapped elsewhere."""
    require_admin(request, "tenant management")
    kind, field = _kind(request)
    body = await _object(request, {"org_id", field})
    org_id = params.uuid_value(body.get("org_id"), "org_id")
    vapi_id = body.get(field)
    if not isinstance(vapi_id, str) or not vapi_id.strip():
        raise Refused(400, f"{field} is required")
    add = orgs.add_agent if kind == "assistant" else orgs.add_phone_number
    async with session(request) as conn:
        try:
            mapping_id = await add(conn, org_id, vapi_id)
        except AlreadyMapped as exc:
            raise Refused(409, str(exc)) from None
        except OrgNotFound as exc:
            raise Refused(404, str(exc)) from None
    return json_response({"id": mapping_id, "org_id": org_id, field: vapi_id}, 201)


async def remove_route(request: web.Request) -> web.Response:
    """Stop routing a Vapi id; 404 if it was not mapped."""
    require_admin(request, "tenant management")
    kind, _ = _kind(request)
    vapi_id = request.match_info["vapi_id"]
    async with session(request) as conn:
        org_id = await orgs.remove_route(conn, kind, vapi_id)
    if org_id is None:
        raise Refused(404, f"{kind} {vapi_id} is not mapped")
    return json_response({"removed": vapi_id, "org_id": org_id})


async def list_tokens(request: web.Request) -> web.Response:
    """Org tokens (never their value), optionally of one ``org_id``; revoked ones carry ``revoked_at``."""
    require_admin(request, "tenant management")
    raw = request.query.get("org_id")
    org_id = params.uuid_value(raw, "org_id") if raw else None
    async with session(request) as conn:
        return json_response({"items": await tokens.list_tokens(conn, org_id)})


async def create_token(request: web.Request) -> web.Response:
    """Create a clinic's token for ``{org_id, name?}``, or an operator's admin token for ``{admin: true, name}``;
    201 with the token, shown this once."""
    require_admin(request, "tenant management")
    body = await _object(request, {"org_id", "name", "admin"})
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise Refused(400, "name must be a string")
    if body.get("admin") is True:
        if "org_id" in body or not (name or "").strip():
            raise Refused(400, "an admin token has a name (who holds it) and no org_id")
        async with session(request) as conn:
            token = await tokens.create_admin(conn, name=(name or "").strip())
        return json_response({"token": token, "admin": True, "name": name}, 201)
    if body.get("admin") not in (None, False):
        raise Refused(400, "admin must be true or false")
    org_id = params.uuid_value(body.get("org_id"), "org_id")
    async with session(request) as conn:
        try:
            token = await tokens.create(conn, org_id, name=name)
        except OrgNotFound as exc:
            raise Refused(404, str(exc)) from None
    return json_response({"token": token, "org_id": org_id, "name": name}, 201)


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token by id: refused from its next request on; 404 if unknown or already revoked."""
    require_admin(request, "tenant management")
    token_id = params.uuid_value(request.match_info["token_id"], "token_id")
    async with session(request) as conn:
        if not await tokens.revoke(conn, token_id):
            raise Refused(404, "no such live token")
    return json_response({"revoked": token_id})


def add_routes(app: web.Application) -> None:
    """Mount the tenant endpoints on the admin sub-app."""
    app.router.add_get("/orgs", list_orgs)
    app.router.add_post("/orgs", create_org)
    app.router.add_get("/orgs/{org_id}", show_org)
    app.router.add_patch("/orgs/{org_id}", update_org)
    for segment in ROUTE_KINDS:
        app.router.add_get(f"/{segment}", list_routes)
        app.router.add_post(f"/{segment}", add_route)
        app.router.add_delete(f"/{segment}/{{vapi_id}}", remove_route)
    app.router.add_get("/tokens", list_tokens)
    app.router.add_post("/tokens", create_token)
    app.router.add_delete("/tokens/{token_id}", revoke_token)
