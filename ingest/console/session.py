"""Console sessions: the cookie, who is signed in, and CSRF on every POST.

The cookie holds a random session id and the CSRF token; the server holds the
session (``console_sessions``: who signed in, as the SHA-256 of their token, never
the token) and checks it on every request, so signing out, a revoked token or
a rotated ``ADMIN_TOKEN`` ends a session at once, copies of its cookie included.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_request import FileField
from aiohttp_session import Session, get_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from multidict import MultiDictProxy

from db import signins, tokens
from ingest.appkeys import DB_POOL, SETTINGS
from ingest.callers import CALLER, Caller
from ingest.console.urls import PREFIX

#: Seconds a console session lasts without signing in again.
SESSION_MAX_AGE_S = 12 * 3600
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
