"""Who is calling the admin API, and the middleware that answers every error as JSON.

``ADMIN_TOKEN`` sees every org. Org-scoped tokens (``vapi-ingest tokens
create``, stored as SHA-256) see only their org: every query they cause runs
inside :func:`db.tenancy.tenant_scope`, so PostgreSQL's row-level security,
not a WHERE clause, keeps them out of other orgs' rows.
"""

from __future__ import annotations

import functools
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from db import tokens
from db.errors import UNAVAILABLE_ERRORS, is_data_error, refusal_reason
from db.filters import InvalidFilter
from db.tenancy import tenant_scope
from db.types import Conn
from ingest.appkeys import DB_POOL, SETTINGS

#: Where the middleware leaves the :class:`Caller` for the handlers.
CALLER = web.RequestKey("caller", object)
#: Paths anyone may read (the API's own description).
PUBLIC_PATHS = frozenset({"/api/openapi.json"})


class ApiError(Exception):
    """An error answer: HTTP status and a reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who is asking: ``org_id`` is None for the admin token (all orgs)."""

    org_id: uuid.UUID | None


async def caller_of(request: web.Request) -> Caller:
    """The :class:`Caller` a bearer token names.

    Raises:
        ApiError: 401 for a missing, malformed or unknown token.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing bearer token")
    if not token.isascii():
        # Tokens are ASCII; other bytes (even ones that are not UTF-8) cannot be one.
        raise ApiError(401, "invalid token")
    admin = request.config_dict[SETTINGS].admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Caller(None)
    org_id = await tokens.org_of(request.config_dict[DB_POOL], token)
    if org_id is None:
        raise ApiError(401, "invalid token")
    return Caller(org_id)


@asynccontextmanager
async def session(request: web.Request) -> AsyncIterator[Conn]:
    """A transaction acting for the request's caller: the whole service for admin, one org under RLS otherwise."""
    who = caller(request)
    async with request.config_dict[DB_POOL].acquire() as conn, conn.transaction():
        if who.org_id is None:
            yield conn
        else:
            async with tenant_scope(conn, who.org_id):
                yield conn


def caller(request: web.Request) -> Caller:
    """The authenticated caller of this request (set by :func:`auth_and_errors`)."""
    found = request[CALLER]
    assert isinstance(found, Caller)
    return found


@web.middleware
async def auth_and_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate every request but :data:`PUBLIC_PATHS`; answer ApiError, InvalidFilter, refused values and
    outages as JSON."""
    try:
        if request.path not in PUBLIC_PATHS:
            request[CALLER] = await caller_of(request)
        return await handler(request)
    except ApiError as exc:
        return json_response({"error": str(exc)}, exc.status)
    except InvalidFilter as exc:
        return json_response({"error": str(exc)}, 400)
    except UNAVAILABLE_ERRORS:
        return json_response({"error": "database unavailable, retry later"}, 503)
    except Exception as exc:
        # A value PostgreSQL cannot store (a NUL, an unpaired surrogate) is the client's fault, not a 500.
        if not is_data_error(exc):
            raise
        return json_response({"error": f"value cannot be stored: {refusal_reason(exc)}"}, 400)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer; datetimes as ISO 8601, UUIDs as strings."""
    return web.json_response(body, status=status, dumps=functools.partial(json.dumps, default=_json_default))
