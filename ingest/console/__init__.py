"""The operator console: a server-rendered aiohttp sub-app under ``/console/`` (Jinja2, htmx for refreshes).

Mounted by :func:`ingest.app.create_app` when ``CONSOLE_ENABLED``. Sign-in takes
``ADMIN_TOKEN`` (every org) or an org token (that org only, under row-level
security as in the admin API); the session lives in an encrypted cookie
(aiohttp-session, key ``CONSOLE_SESSION_KEY``). Every POST carries a CSRF token;
every answer carries a Content-Security-Policy without inline scripts.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware

from ingest.console import access, calendar, clinics, pages, quarantine, replays, signin
from ingest.console.formats import at, day_in, pretty_json
from ingest.console.headers import security_headers
from ingest.console.session import ConsoleCookieStorage, guard
from ingest.console.urls import PREFIX
from workers.hours import WEEKDAYS

HERE = Path(__file__).resolve().parent
#: The vendored htmx (npm htmx.org 2.0.11, dist/htmx.min.js, sha256 d6fdc75f...f717); no CDN.
HTMX = "htmx-2.0.11.min.js"


def create_console_app(session_key: bytes) -> web.Application:
    """The sub-app to mount at :data:`~ingest.console.urls.PREFIX` (``/console``).

    Args:
        session_key: 32 random bytes that encrypt the session cookie (Fernet).
    """
    app = web.Application(
        middlewares=[security_headers, session_middleware(ConsoleCookieStorage(session_key, PREFIX)), guard]
    )
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pretty_json"] = pretty_json
    env.filters["at"] = at
    env.filters["day_in"] = day_in
    env.globals["htmx"] = HTMX
    env.globals["prefix"] = PREFIX
    env.globals["weekdays"] = WEEKDAYS
    app.router.add_get("/login", signin.login_form)
    app.router.add_post("/login", signin.login)
    app.router.add_post("/logout", signin.logout)
    app.router.add_get("/", pages.overview)
    app.router.add_get("/dead-letters", pages.dead_letters)
    app.router.add_get("/dead-letters/replay", replays.confirm)
    app.router.add_get("/deliveries/{id}", pages.delivery)
    app.router.add_post("/deliveries/{id}/called-back", pages.call_back)
    app.router.add_post("/deliveries/{id}/payload", pages.reveal_payload)
    app.router.add_post("/deliveries/{id}/replay", pages.replay_one)
    app.router.add_post("/deliveries/{id}/discard", pages.discard)
    app.router.add_get("/missed", pages.missed)
    app.router.add_get("/access", access.page)
    app.router.add_get("/appointments", calendar.week)
    app.router.add_get("/search", pages.search)
    app.router.add_get("/quarantine", quarantine.page)
    app.router.add_get("/quarantine/confirm", quarantine.confirm)
    app.router.add_post("/quarantine/route", quarantine.route)
    app.router.add_get("/clinics", clinics.list_page)
    app.router.add_post("/clinics", clinics.create)
    app.router.add_get("/clinics/{id}", clinics.show)
    app.router.add_post("/clinics/{id}", clinics.update)
    app.router.add_post("/clinics/{id}/revoke", clinics.revoke_token)
    app.router.add_get("/replays", replays.list_page)
    app.router.add_post("/replays", replays.start)
    app.router.add_get("/replays/{id}", replays.show)
    app.router.add_post("/replays/{id}/cancel", replays.cancel)
    app.router.add_static("/static", HERE / "static", append_version=True)
    return app
