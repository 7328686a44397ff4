"""``webhook_quarantine``: authenticated messages that no tenant claims yet.

Stored so that nothing acknowledged is lost; operators route them once the
assistant or phone number is mapped (``vapi-ingest quarantine route``).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def insert(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    event_type: str,
    event_id: str,
    assistant_id: str | None,
    phone_number_id: str | None,
    payload: dict[str, Any],
) -> uuid.UUID | None:
    """Store an unroutable message once per ``event_id``.

    Returns:
        The new row's id, or ``None`` if this key is already quarantined.
    """
    return await conn.fetchval(
        """
        INSERT INTO webhook_quarantine (event_type, event_id, assistant_id, phone_number_id, payload)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING id
        """,
        event_type,
        event_id,
        assistant_id,
        phone_number_id,
        payload,
    )


async def count_unrouted(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """Quarantined messages not yet routed to a tenant."""
    return await conn.fetchval("SELECT count(*) FROM webhook_quarantine WHERE routed_at IS NULL")
