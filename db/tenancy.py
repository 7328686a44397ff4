"""Tenant-scoped transactions: row-level security enforced by PostgreSQL, not by WHERE clauses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from db.types import Conn

#: A role without BYPASSRLS (created by 0001_core.sql).
TENANT_ROLE = "vapi_tenant"

#: A condition on ``webhook_delivery_log d``: the delivery is of a clinic this session sees. Row-level
#: security shows a clinic's session its own ``organizations`` row and the admin every row; naming those
#: clinics lets a read probe the ``org_id``-leading indexes (migration 0019) once per clinic (a bitmap scan
#: for many, so heap pages are still read in order). Without it, a clinic's read would filter every
#: clinic's rows through the policy, which no index serves (an OR over settings), and any qual that is not
#: leakproof would wait until after the policy (issue 17).
IN_VISIBLE_ORGS = "d.org_id = ANY (ARRAY(SELECT id FROM organizations))"


@asynccontextmanager
async def tenant_scope(conn: Conn, org_id: uuid.UUID, *, source_event_id: str | None = None) -> AsyncIterator[None]:
    """Within a transaction, act as ``org_id`` only: every statement sees and writes its rows alone.

    Switches to :data:`TENANT_ROLE`, sets ``app.org_id`` and turns the service
    bypass off, all ``LOCAL`` to the transaction; on normal exit restores the
    service role, and after a Python exception too. After a PostgreSQL error
    the transaction is aborted; its rollback undoes the settings.

    Args:
        source_event_id: The idempotency key of the delivery on whose behalf rows are written;
            ``appointments.source_event_id`` defaults to it (migration 0016).

    Raises:
        RuntimeError: if ``conn`` is not inside a transaction.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("tenant_scope needs a transaction (its settings are transaction-local)")
    # set_config('role', ...) is SET LOCAL ROLE, in one round trip with the rest.
    await conn.execute(
        "SELECT set_config('role', $1, true), set_config('app.org_id', $2, true),"
        " set_config('app.bypass_rls', 'off', true), set_config('app.source_event_id', $3, true)",
        TENANT_ROLE,
        str(org_id),
        source_event_id or "",
    )
    try:
        yield
    except asyncpg.PostgresError:
        raise
    except BaseException:
        await _restore(conn)
        raise
    await _restore(conn)


async def _restore(conn: Conn) -> None:
    await conn.execute(
        "SELECT set_config('role', 'none', true), set_config('app.org_id', '', true),"
        " set_config('app.bypass_rls', 'on', true), set_config('app.source_event_id', '', true)"
    )
