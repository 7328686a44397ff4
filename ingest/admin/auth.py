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

from db.errors import UNAVAILABLE_ERRORS, is_data_error, refusal_reason
from db.filters import InvalidFilter
from ingest.appkeys import DB_POOL, SETTINGS
from ingest.callers import CALLER, Caller, caller_for_token

#: Paths anyone may read (the API's own description).
PUBLIC_PATHS = frozenset({"/api/openapi.json"})


class ApiError(Exception):
    """An error answer: HTTP status and a reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


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
    who = await caller_for_token(request.config_dict[SETTINGS], request.config_dict[DB_POOL], token)
    if who is None:
        raise ApiError(401, "invalid token")
    return who


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
