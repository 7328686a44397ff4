"""Console sign-in and sign-out.

Signing in takes an admin token (an operator's own, or ``ADMIN_TOKEN``) or a
clinic's token and starts a server-side session (:mod:`ingest.console.session`).
Failed sign-ins are limited per client address (:mod:`ingest.clients`),
counted in PostgreSQL so that every web process shares one count.
"""

from __future__ import annotations

import math

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session, new_session

from db import signins, tokens
from ingest import metrics
from ingest.appkeys import DB_POOL, SETTINGS
from ingest.callers import caller_for_token
from ingest.clients import client_address
from ingest.console.session import SESSION_MAX_AGE_S, csrf_token, form
from ingest.console.urls import PREFIX


async def login_form(request: web.Request) -> web.Response:
    """The sign-in page: one password field named ``token``."""
    session = await get_session(request)
    return aiohttp_jinja2.render_template("login.html", request, {"csrf": csrf_token(session), "error": None})


async def login(request: web.Request) -> web.Response:
    """Sign in with an admin token (an operator's own, or ``ADMIN_TOKEN``) or an org token: a new server-side
    session and a new cookie.

    Each client address (:func:`~ingest.clients.client_address`) gets
    :data:`~db.signins.MAX_FAILED_ATTEMPTS` failures per window; the attempt is counted before the token
    is checked, in one statement, so concurrent tries cannot exceed it; then 429 with ``Retry-After``.
    """
    pool = request.config_dict[DB_POOL]
    client = client_address(request)
    wait_s = await signins.take_attempt(
        pool, client, limit=signins.MAX_FAILED_ATTEMPTS, window_s=signins.ATTEMPT_WINDOW_S
    )
    if wait_s is not None:
        metrics.CONSOLE_SIGNINS.labels("limited").inc()
        minutes = max(1, math.ceil(wait_s / 60))
        refused = await _refused(request, 429, f"too many failed sign-ins: try again in {minutes} minute(s)")
        refused.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
        return refused
    token = (await form(request)).get("token")
    token = token.strip() if isinstance(token, str) else ""
    who = await caller_for_token(request.config_dict[SETTINGS], pool, token) if token else None
    if who is None:
        metrics.CONSOLE_SIGNINS.labels("failed").inc()
        return await _refused(request, 401, "that token is not valid")
    await signins.give_back_attempt(pool, client)
    metrics.CONSOLE_SIGNINS.labels("ok").inc()
    session_id = await signins.start_session(
        pool, token_sha256=tokens.token_sha256(token), admin=who.admin, max_age_s=SESSION_MAX_AGE_S
    )
    session = await new_session(request)  # a fresh session (and CSRF token) on sign-in: no fixation
    session["id"] = session_id
    csrf_token(session)
    raise web.HTTPFound(f"{PREFIX}/")


async def _refused(request: web.Request, status: int, error: str) -> web.Response:
    session = await get_session(request)
    return aiohttp_jinja2.render_template(
        "login.html", request, {"csrf": csrf_token(session), "error": error}, status=status
    )


async def logout(request: web.Request) -> web.Response:
    """Sign out: the server ends the session (any copy of the cookie is refused from now on), and the
    browser's cookie expires."""
    session = await get_session(request)
    session_id = session.get("id")
    if isinstance(session_id, str):
        await signins.end_session(request.config_dict[DB_POOL], session_id)
    session.invalidate()
    raise web.HTTPFound(f"{PREFIX}/login")
