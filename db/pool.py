"""asyncpg pools for the service's own connections."""

from __future__ import annotations

from typing import Any

import asyncpg

from db import jsonb
from db.errors import UNAVAILABLE_ERRORS
from db.types import Conn

__all__ = ["UNAVAILABLE_ERRORS", "connect", "create_pool", "set_local_statement_timeout"]

#: Set on every service connection: the service role bypasses row-level
#: security explicitly (see the policies in 0001_core.sql).
#: JIT is off: it compiles any plan whose *estimated* cost is high, and the service only runs short
#: index reads, where compiling took 340 ms of a 1 ms query (the console's chart at 1,000,000 rows).
SERVICE_SERVER_SETTINGS = {"app.bypass_rls": "on", "application_name": "vapi-ingest", "jit": "off"}


async def _init_connection(conn: Conn) -> None:
    # jsonb travels as text; decode to Python objects both ways.
    await conn.set_type_codec("jsonb", encoder=jsonb.encode, decoder=jsonb.decode, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=jsonb.encode, decoder=jsonb.decode, schema="pg_catalog")


async def _keep_session(conn: Conn) -> None:
    """Skip asyncpg's reset on release (a round trip per use).

    Safe here because the service keeps no session state on pooled
    connections: tenant settings are transaction-local (``set_config(..., true)``)
    and the one session-level advisory lock (scheduler jobs) is released explicitly.
    """


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, asynchronous_commit: bool = False, **kwargs: Any
) -> asyncpg.Pool:
    """Open a pool of service connections (RLS bypass on, JSON codecs installed).

    Args:
        dsn: A libpq URL; ``PG*`` variables fill what it leaves out.
        asynchronous_commit: ``synchronous_commit = off`` on every connection: a commit returns
            before its WAL reaches disk, so a PostgreSQL crash can lose the last fraction of a second
            of commits (never corrupt them). Only for work that is redone from a durable row when
            lost (the workers: a delivery's effects and its completion commit together). Never for
            the receiver, which acknowledges only what is durable.

    Raises:
        OSError, asyncpg.PostgresError: if PostgreSQL cannot be reached.
    """
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings={**SERVICE_SERVER_SETTINGS, "synchronous_commit": "off"}
        if asynchronous_commit
        else SERVICE_SERVER_SETTINGS,
        **kwargs,
    )


async def connect(dsn: str) -> Conn:
    """Open one service connection, set up like the pool's."""
    conn = await asyncpg.connect(dsn, server_settings=SERVICE_SERVER_SETTINGS)
    await _init_connection(conn)
    return conn


async def set_local_statement_timeout(conn: Conn, timeout_ms: int) -> None:
    """End any statement of the current transaction that runs longer than ``timeout_ms`` (``SET LOCAL``)."""
    await conn.execute("SELECT set_config('statement_timeout', $1, true)", str(timeout_ms))
