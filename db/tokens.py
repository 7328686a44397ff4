"""API tokens (``api_tokens``): scoped to one organization, or an operator's own admin token (all
organizations, named for the person). Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict, cast

import asyncpg

from db.errors import OrgNotFound
from db.types import Executor

#: Every token starts so, to be recognisable in a leak scan.
TOKEN_PREFIX = "vit_"


def token_sha256(token: str) -> str:
    """How a token is stored: hex SHA-256 (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenHolder:
    """Whom a live token belongs to: an organization (``org_id``), or an operator (``admin``, ``org_id`` None)."""

    id: uuid.UUID
    org_id: uuid.UUID | None
    admin: bool
    name: str | None


async def create(conn: Executor, org_id: uuid.UUID, *, name: str | None) -> str:
    """Create a token for ``org_id`` and return it (the only time it is seen).

    Raises:
        OrgNotFound: no such organization.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        await conn.execute(
            "INSERT INTO api_tokens (org_id, token_sha256, name) VALUES ($1, $2, $3)", org_id, token_sha256(token), name
        )
    except asyncpg.ForeignKeyViolationError:
        raise OrgNotFound(f"no organization with id {org_id}") from None
    return token


async def create_admin(conn: Executor, *, name: str) -> str:
    """Create an operator's own admin token (every organization; recorded under ``name``) and return it,
    the only time it is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_tokens (org_id, token_sha256, name, admin) VALUES (NULL, $1, $2, true)",
        token_sha256(token),
        name,
    )
    return token


#: How stale ``api_tokens.last_used_at`` may be: written at most this often per token, so a busy token
#: costs one row version a minute, not one per request.
LAST_USED_RESOLUTION_S = 60


async def holder_of(conn: Executor, token: str) -> TokenHolder | None:
    """Whom a token belongs to, or ``None`` for an unknown or revoked token; records the use in
    ``last_used_at`` (to :data:`LAST_USED_RESOLUTION_S`), in the same statement."""
    row = await conn.fetchrow(
        """
        WITH t AS (SELECT id, org_id, admin, name, last_used_at FROM api_tokens
                    WHERE token_sha256 = $1 AND revoked_at IS NULL),
             used AS (UPDATE api_tokens a SET last_used_at = now() FROM t
                       WHERE a.id = t.id
                         AND (t.last_used_at IS NULL OR t.last_used_at < now() - make_interval(secs => $2)))
        SELECT id, org_id, admin, name FROM t
        """,
        token_sha256(token),
        LAST_USED_RESOLUTION_S,
    )
    return TokenHolder(row["id"], row["org_id"], row["admin"], row["name"]) if row else None


class TokenRow(TypedDict):
    """A token as listed (never its value)."""

    id: uuid.UUID
    org_id: uuid.UUID | None
    org_name: str | None
    admin: bool
    name: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


async def list_tokens(conn: Executor, org_id: uuid.UUID | None = None) -> list[TokenRow]:
    """Tokens (never their value), newest first: ``{id, org_id, org_name, admin, name, created_at, last_used_at,
    revoked_at}``; with ``org_id``, that organization's only, else every token, operators' admin tokens
    included. ``last_used_at``: its last API call or console sign-in, to a minute (None: never used)."""
    rows = await conn.fetch(
        "SELECT t.id, t.org_id, o.name AS org_name, t.admin, t.name, t.created_at, t.last_used_at, t.revoked_at"
        "  FROM api_tokens t LEFT JOIN organizations o ON o.id = t.org_id"
        " WHERE $1::uuid IS NULL OR t.org_id = $1 ORDER BY t.created_at DESC",
        org_id,
    )
    return [cast(TokenRow, dict(r)) for r in rows]


async def revoke(conn: Executor, token_id: uuid.UUID) -> bool:
    """Revoke a token: refused from its next request on. False if it was already revoked or does not exist."""
    status = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
    )
    return status == "UPDATE 1"
