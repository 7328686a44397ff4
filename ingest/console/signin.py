"""Console sign-in: the session cookie, who is signed in, CSRF on every POST, and the security headers.

The cookie holds a random session id and the CSRF token; the server holds the
session (``console_sessions``: who signed in, as the SHA-256 of their token, never
the token) and checks it on every request, so signing out, a revoked org token or
a rotated ``ADMIN_TOKEN`` ends a session at once, copies of its cookie included.
Failed sign-ins are limited per client address (:mod:`ingest.clients`),
counted in PostgreSQL so that every web process shares one count.
"""

from __future__ import annotations

import hmac
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.web_request import FileField
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from multidict import MultiDictProxy

from db import signins, tokens
from db.errors import UNAVAILABLE_ERRORS, is_data_error, refusal_reason
from ingest import metrics
from ingest.appkeys import DB_POOL, SETTINGS
from ingest.callers import CALLER, Caller, caller, caller_for_token
from ingest.clients import client_address

#: Where the console is mounted (ingest.app).
PREFIX = "/console"
#: Seconds a console session lasts without signing in again.
SESSION_MAX_AGE_S = 12 * 3600
#: No inline scripts or styles, no framing, forms post only here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def over_tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: ``CONSOLE_TLS`` says so, or the request is, or a proxy says
    so in ``X-Forwarded-Proto`` (its first value, any case) or RFC 7239 ``Forwarded`` (its first hop's
    ``proto``). A forged header can only make the forger's own cookie ``Secure``, which its browser then
    keeps off plain HTTP: trusting it costs nothing, missing it leaks a cookie."""
    if request.config_dict[SETTINGS].console_tls or request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
    if not proto and request.forwarded:
        proto = request.forwarded[0].get("proto", "")
    return proto.lower() == "https"


class ConsoleCookieStorage(EncryptedCookieStorage):
    """aiohttp-session's encrypted cookie: ``HttpOnly``, ``SameSite=Strict``, path ``/console``, and
    ``Secure`` whenever the browser came over TLS (:func:`over_tls`)."""

    def __init__(self, key: bytes, path: str) -> None:
        super().__init__(
            key, cookie_name="vapi_console", path=path, httponly=True, samesite="Strict", max_age=SESSION_MAX_AGE_S
        )

    def load_cookie(self, request: web.Request) -> str | None:
        """The cookie's value; None (a new, signed-out session) for one that is not ASCII, which no cookie
        we wrote is: it would otherwise fail every console page for that browser, the sign-in page too."""
        cookie = super().load_cookie(request)
        return cookie if cookie is None or cookie.isascii() else None

    async def save_session(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        # No await between this and the cookie being written, so concurrent requests cannot interleave.
        self.cookie_params["secure"] = over_tls(request)
        await super().save_session(request, response, session)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CSP without inline scripts, no framing, no sniffing, no referrer, on every console answer; an
    outage is 503 and a value PostgreSQL refuses is 400, each with its reason."""
    # Pages hold patient data: never cached. Static files are versioned (append_version), so they may be.
    cacheable = request.path.startswith(f"{PREFIX}/static/")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(exc, cacheable)
        raise
    except UNAVAILABLE_ERRORS:
        response = web.Response(
            status=503, text="the database is unavailable; this page will work again when it is back"
        )
    except Exception as exc:
        # A value PostgreSQL cannot hold (a NUL in a query parameter): the request's fault, as in the admin API.
        if not is_data_error(exc):
            raise
        response = web.Response(status=400, text=f"value cannot be used: {refusal_reason(exc)}")
    _secure(response, cacheable)
    return response


def _secure(response: web.StreamResponse, cacheable: bool) -> None:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not cacheable:
        response.headers["Cache-Control"] = "no-store"


async def caller_of_session(request: web.Request, session: Session) -> Caller | None:
    """Who this session is signed in as, if the server still holds it (not signed out, not expired) and
    its token is still valid (not revoked; ``ADMIN_TOKEN`` unchanged); None otherwise."""
    session_id = session.get("id")
    if not isinstance(session_id, str):
        return None
    held = await signins.holder(request.config_dict[DB_POOL], session_id)
    if held is None:
        return None
    if held.token_id is not None:
        return Caller(None if held.admin else held.org_id, held.token_id, held.token_name)
    admin = request.config_dict[SETTINGS].admin_token
    valid = held.admin and admin is not None and hmac.compare_digest(held.token_sha256, tokens.token_sha256(admin))
    return Caller(None) if valid else None


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use (every console form posts it as ``csrf``)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The POST's form (parsed once; aiohttp keeps it for the handler).

    Raises:
        web.HTTPBadRequest: a body that is not text in its charset (UTF-8 unless it says otherwise), an
            unknown charset, or multipart without a boundary: the sender's fault, with its reason.
    """
    try:
        return await request.post()
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the form is not valid text in its charset (UTF-8 unless it says)") from None
    except LookupError:
        raise web.HTTPBadRequest(text=f"unknown charset: {request.charset!r}") from None
    except ValueError as exc:  # aiohttp's multipart reader: no boundary, a broken part
        raise web.HTTPBadRequest(text=f"the form cannot be read: {exc}") from None


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    expected = session.get("csrf")
    fields = await form(request)  # every POST's body is read here, so no handler meets one it cannot read
    if not isinstance(expected, str):
        return False
    # Every console form (htmx's included) posts the token as a field; no header is read.
    given: object = fields.get("csrf")
    # Our tokens are ASCII; anything else (bytes that were not UTF-8 included) cannot match one.
    return isinstance(given, str) and given.isascii() and hmac.compare_digest(given.encode(), expected.encode())


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Static files pass; every POST needs the session's CSRF token; every page but sign-in needs a session."""
    if request.path.startswith(f"{PREFIX}/static/"):
        return await handler(request)
    session = await get_session(request)
    if request.method == "POST" and not await _csrf_ok(request, session):
        raise web.HTTPForbidden(text="missing or stale CSRF token: reload the page and try again")
    if request.path == f"{PREFIX}/login":
        return await handler(request)
    who = await caller_of_session(request, session)
    if who is None:
        raise web.HTTPFound(f"{PREFIX}/login")
    request[CALLER] = who
    return await handler(request)


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


async def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """A console page: ``context`` plus what the layout needs (the CSRF token, whether the admin is in)."""
    layout = {"csrf": csrf_token(await get_session(request)), "admin": caller(request).org_id is None}
    return aiohttp_jinja2.render_template(template, request, {**layout, **context}, status=status)


def admin_only(request: web.Request, what: str) -> None:
    """Refuse an org's session (403) for pages that act across clinics.

    Raises:
        web.HTTPForbidden: naming ``what``.
    """
    if caller(request).org_id is not None:
        raise web.HTTPForbidden(text=f"{what} needs the admin token")


def path_id(request: web.Request, what: str) -> uuid.UUID:
    """The ``{id}`` of the URL as a UUID.

    Raises:
        web.HTTPNotFound: it is not one ("no such <what>").
    """
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text=f"no such {what}") from None
