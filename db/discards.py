"""Discarded dead letters (``discards``): an operator decided one must never run, and said why."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypedDict, cast

from db.types import Conn


async def discard(conn: Conn, delivery_id: uuid.UUID, *, discarded_by: str, reason: str) -> bool:
    """Discard a dead letter that must not run: status ``discarded`` (terminal, never replayed) and a
    ``discards`` record of who and why, in one statement. False if it is not a dead letter this session
    sees (already discarded, replayed meanwhile, another clinic's)."""
    status = await conn.execute(
        """
        WITH d AS (
            UPDATE webhook_delivery_log SET status = 'discarded', next_attempt_at = NULL, lease_expires_at = NULL
             WHERE id = $1 AND status = 'dead_letter'
            RETURNING id, org_id
        )
        INSERT INTO discards (delivery_id, org_id, discarded_by, reason) SELECT id, org_id, $2, $3 FROM d
        """,
        delivery_id,
        discarded_by,
        reason,
    )
    return status == "INSERT 0 1"


class Discard(TypedDict):
    """Who discarded a dead letter, when, and why."""

    discarded_by: str
    discarded_at: datetime
    reason: str


async def discard_of(conn: Conn, delivery_id: uuid.UUID) -> Discard | None:
    """Why a delivery was discarded, if it was: ``{discarded_by, discarded_at, reason}``."""
    row = await conn.fetchrow(
        "SELECT discarded_by, discarded_at, reason FROM discards WHERE delivery_id = $1", delivery_id
    )
    return cast(Discard, dict(row)) if row else None
