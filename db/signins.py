"""Console sign-in state held by the server (``console_sessions``, ``console_signin_attempts``).

Both live in PostgreSQL so that every web process sees the same sessions and the same counts, and a
restart forgets neither. Neither table is granted to the tenant role.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from db.tokens import token_sha256 as _sha256
from db.types import Executor

#: Failed sign-ins a client may make in one window; then it is refused (429) until the window ends.
MAX_FAILED_ATTEMPTS = 10
#: Seconds of a client's attempt window, counted from its first attempt.
ATTEMPT_WINDOW_S = 300.0


@dataclass(frozen=True)
class Holder:
    """Who a live session belongs to: the SHA-256 of the token it signed in with and whether it signed in
    as an admin; for a token of ``api_tokens`` (a clinic's, or an operator's admin token), its id, org
    and name while it is not revoked (else None: then only ``ADMIN_TOKEN`` itself can hold the session)."""

    token_sha256: str
    admin: bool
    org_id: uuid.UUID | None
    token_id: uuid.UUID | None
    token_name: str | None = None


async def start_session(conn: Executor, *, token_sha256: str, admin: bool, max_age_s: int) -> str:
    """Record a new session for ``max_age_s`` seconds and return its id (random, 43 characters), which
    only the cookie holds; the row holds its SHA-256."""
    session_id = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO console_sessions (id_sha256, token_sha256, admin, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        _sha256(session_id),
        token_sha256,
        admin,
        float(max_age_s),
    )
    return session_id


async def holder(conn: Executor, session_id: str) -> Holder | None:
    """The holder of a session that has not ended or expired, or None."""
    row = await conn.fetchrow(
        "SELECT s.token_sha256, s.admin, t.org_id, t.id AS token_id, t.name AS token_name FROM console_sessions s"
        "  LEFT JOIN api_tokens t ON t.admin = s.admin AND t.token_sha256 = s.token_sha256 AND t.revoked_at IS NULL"
        " WHERE s.id_sha256 = $1 AND s.expires_at > now()",
        _sha256(session_id),
    )
    if row is None:
        return None
    return Holder(row["token_sha256"], row["admin"], row["org_id"], row["token_id"], row["token_name"])


async def end_session(conn: Executor, session_id: str) -> bool:
    """End a session (sign-out): its cookie is refused from the next request on. False if it had ended."""
    status = await conn.execute("DELETE FROM console_sessions WHERE id_sha256 = $1", _sha256(session_id))
    return status == "DELETE 1"


async def take_attempt(conn: Executor, client: str, *, limit: int, window_s: float) -> float | None:
    """Count one sign-in attempt by ``client`` in its fixed window of ``window_s`` seconds, in one
    statement (concurrent attempts cannot both see the last free place).

    Returns:
        None if it is within ``limit`` (check the token, then :func:`give_back_attempt` if it was
        right); else the seconds until the client's window ends.
    """
    row = await conn.fetchrow(
        "INSERT INTO console_signin_attempts AS a (client, window_start, attempts) VALUES ($1, now(), 1)"
        " ON CONFLICT (client) DO UPDATE SET"
        "   window_start = CASE WHEN a.window_start <= now() - make_interval(secs => $2) THEN now()"
        "                       ELSE a.window_start END,"
        "   attempts = CASE WHEN a.window_start <= now() - make_interval(secs => $2) THEN 1"
        "                   ELSE a.attempts + 1 END"
        " RETURNING attempts,"
        "   extract(epoch FROM window_start + make_interval(secs => $2) - now())::float8 AS left_s",
        client,
        float(window_s),
    )
    assert row is not None
    # Clamped: a concurrent attempt that began later may have opened the window after our now().
    return None if row["attempts"] <= limit else min(max(row["left_s"], 0.0), window_s)


async def give_back_attempt(conn: Executor, client: str) -> None:
    """Uncount an attempt that signed in: only failures use up a client's allowance."""
    await conn.execute(
        "UPDATE console_signin_attempts SET attempts = greatest(attempts - 1, 0) WHERE client = $1", client
    )


async def prune(conn: Executor, *, window_s: float = ATTEMPT_WINDOW_S) -> int:
    """Delete expired sessions and attempt windows that have ended (``window_s`` seconds long).

    Returns:
        How many rows were deleted (both tables).
    """
    sessions = await conn.execute("DELETE FROM console_sessions WHERE expires_at <= now()")
    attempts = await conn.execute(
        "DELETE FROM console_signin_attempts WHERE window_start <= now() - make_interval(secs => $1)",
        float(window_s),
    )
    return int(sessions.split()[-1]) + int(attempts.split()[-1])
