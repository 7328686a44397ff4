"""Who is calling the admin API or using the console, from the token they present, and how they are recorded.

Three kinds of token: ``ADMIN_TOKEN`` (the break-glass credential: every organization, recorded as
such), an operator's own admin token (``tokens create --admin --name``: every organization, recorded
under its name) and a clinic's token (``tokens create --org``: that organization only, under
row-level security). The last two live in ``api_tokens`` (SHA-256 only) and can be revoked.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from db import tokens
from db.reveals import Accessor, Via
from db.tenancy import tenant_scope
from db.types import Conn, Executor
from ingest.appkeys import DB_POOL
from ingest.clients import client_address
from ingest.errors import Refused
from ingest.settings import Settings

#: Where the admin API's and the console's middleware leave the :class:`Caller` for the handlers.
CALLER = web.RequestKey("caller", object)

#: How ``ADMIN_TOKEN`` is recorded.
BREAK_GLASS = "admin (break-glass)"


@dataclass(frozen=True)
class Caller:
    """Who is asking.

    Attributes:
        org_id: Their organization; None for an admin (every organization).
        token_id: The ``api_tokens`` row; None for ``ADMIN_TOKEN``.
        name: That token's name.
    """

    org_id: uuid.UUID | None
    token_id: uuid.UUID | None = None
    name: str | None = None

    @property
    def admin(self) -> bool:
        """Sees every organization."""
        return self.org_id is None

    @property
    def recorded_as(self) -> str:
        """The person as records name them (access records, call-backs, discards, replays)."""
        if self.token_id is None:
            return BREAK_GLASS
        return f"{self.name or 'unnamed'} ({'admin' if self.admin else 'clinic token'})"


async def caller_for_token(settings: Settings, conn: Executor, token: str) -> Caller | None:
    """The :class:`Caller` a token names, or None for an unknown or revoked one (constant-time against ``ADMIN_TOKEN``)."""
    if settings.admin_token and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return Caller(None)
    holder = await tokens.holder_of(conn, token)
    if holder is None:
        return None
    return Caller(None if holder.admin else holder.org_id, holder.id, holder.name)


def accessor(request: web.Request, who: Caller, via: Via) -> Accessor:
    """How an access by ``who`` through this request is recorded (the client's address through trusted proxies)."""
    return Accessor(label=who.recorded_as, via=via, token_id=who.token_id, client=client_address(request))


def caller(request: web.Request) -> Caller:
    """The authenticated caller of this request (set by the admin API's or the console's middleware)."""
    found = request[CALLER]
    assert isinstance(found, Caller)
    return found


def require_admin(request: web.Request, what: str) -> None:
    """Refuse a clinic's caller where ``what`` acts across clinics (the admin API and the console alike).

    Raises:
        Refused: 403 ``"<what> needs an admin token"``.
    """
    if not caller(request).admin:
        raise Refused(403, f"{what} needs an admin token")


@asynccontextmanager
async def session(request: web.Request) -> AsyncIterator[Conn]:
    """A transaction acting for the request's caller: the whole service for an admin, one org under RLS otherwise."""
    who = caller(request)
    async with request.config_dict[DB_POOL].acquire() as conn, conn.transaction():
        if who.org_id is None:
            yield conn
        else:
            async with tenant_scope(conn, who.org_id):
                yield conn
