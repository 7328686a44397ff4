"""Where the console lives and how its URLs name things."""

from __future__ import annotations

import uuid

from aiohttp import web

#: Where the console is mounted (ingest.app).
PREFIX = "/console"


def path_id(request: web.Request, what: str) -> uuid.UUID:
    """The ``{id}`` of the URL as a UUID.

    Raises:
        web.HTTPNotFound: it is not one ("no such <what>").
    """
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text=f"no such {what}") from None
