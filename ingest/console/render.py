"""Rendering a console page with what its layout needs."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from ingest.callers import caller
from ingest.console.session import csrf_token


async def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """A console page: ``context`` plus what the layout needs (the CSRF token, whether the admin is in)."""
    layout = {"csrf": csrf_token(await get_session(request)), "admin": caller(request).org_id is None}
    return aiohttp_jinja2.render_template(template, request, {**layout, **context}, status=status)
