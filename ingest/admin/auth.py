"""Who is calling the admin API, and the middleware that answers every error as JSON.

``ADMIN_TOKEN`` and operators' admin tokens see every org. Org-scoped tokens
(``vapi-ingest tokens create``, stored as SHA-256) see only their org: every
query they cause runs inside :func:`db.tenancy.tenant_scope`, so PostgreSQL's
row-level security, not a WHERE clause, keeps them out of other orgs' rows.
Which token is which: :mod:`ingest.callers`.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from ingest.appkeys import DB_POOL, SETTINGS
from ingest.callers import CALLER, Caller, caller_for_token
from ingest.errors import Refused, refusal_of

#: Paths anyone may read (the API's own description).
PUBLIC_PATHS = frozenset({"/api/openapi.json"})


async def caller_of(request: web.Request) -> Caller:
    """The :class:`Caller` a bearer token names.

    Raises:
        Refused: 401 for a missing, malformed or unknown token.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refused(401, "missing bearer token")
    if not token.isascii():
        # Tokens are ASCII; other bytes (even ones that are not UTF-8) cannot be one.
        raise Refused(401, "invalid token")
    who = await caller_for_token(request.config_dict[SETTINGS], request.config_dict[DB_POOL], token)
    if who is None:
        raise Refused(401, "invalid token")
    return who


@web.middleware
async def auth_and_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Authenticate every request but :data:`PUBLIC_PATHS`; answer refusals, unreadable filters, values
    PostgreSQL refuses and outages as JSON ``{"error": reason}`` (:func:`ingest.errors.refusal_of`)."""
    try:
        if request.path not in PUBLIC_PATHS:
            request[CALLER] = await caller_of(request)
        return await handler(request)
    except Exception as exc:
        refused = refusal_of(exc)
        if refused is None:
            raise
        return json_response({"error": refused.reason}, refused.status)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer; datetimes as ISO 8601, UUIDs as strings."""
    return web.json_response(body, status=status, dumps=functools.partial(json.dumps, default=_json_default))
