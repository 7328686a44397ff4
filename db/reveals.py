"""The access record (``reveals``): who saw patient data from a stored message, when, how and from where.

A row is written before the data is shown: for one delivery (its payload, or its caller's number and
what they asked for), or for a page listing a clinic's patients (one row per clinic shown, no
delivery). Under row-level security a clinic writes and reads only its own rows, so a clinic's
token lists who looked at its patients' calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict, cast

from db.types import Conn

#: How the data was reached.
Via = Literal["console", "api", "cli"]


@dataclass(frozen=True)
class Accessor:
    """Who is looking, as recorded.

    Attributes:
        label: The person as the service knows them: an admin token's name, ``ADMIN_TOKEN (break-glass)``,
            a clinic token's name, or the CLI's ``user@host``.
        via: ``console``, ``api`` or ``cli``.
        token_id: The ``api_tokens`` row they used, if any (``ADMIN_TOKEN`` and the CLI have none).
        client: Where from: the client's address (console, API) or ``user@host`` (CLI).
    """

    label: str
    via: Via
    token_id: uuid.UUID | None = None
    client: str | None = None


async def record_delivery(conn: Conn, who: Accessor, delivery_id: uuid.UUID, what: str) -> bool:
    """Record that ``who`` is shown ``what`` of one delivery (``payload``, ``caller``…).

    Returns:
        False if the delivery does not exist or this connection cannot see it (nothing is recorded).
    """
    status = await conn.execute(
        "INSERT INTO reveals (delivery_id, org_id, revealed_by, what, via, token_id, client)"
        " SELECT id, org_id, $2, $3, $4, $5, $6 FROM webhook_delivery_log WHERE id = $1",
        delivery_id,
        who.label,
        what,
        who.via,
        who.token_id,
        who.client,
    )
    return bool(status == "INSERT 0 1")


async def record_listing(conn: Conn, who: Accessor, org_ids: Iterable[uuid.UUID], what: str) -> int:
    """Record that ``who`` is shown a page of these clinics' patients (``what`` says which page and how many
    rows); one row per clinic. Returns how many rows were written."""
    orgs = sorted(set(org_ids))
    if not orgs:
        return 0
    await conn.execute(
        "INSERT INTO reveals (org_id, revealed_by, what, via, token_id, client)"
        " SELECT o, $2, $3, $4, $5, $6 FROM unnest($1::uuid[]) AS o",
        orgs,
        who.label,
        what,
        who.via,
        who.token_id,
        who.client,
    )
    return len(orgs)


class Reveal(TypedDict):
    """One recorded access to a delivery's patient data."""

    revealed_by: str
    revealed_at: datetime
    what: str
    via: str
    client: str | None


async def of_delivery(conn: Conn, delivery_id: uuid.UUID, *, limit: int = 20) -> list[Reveal]:
    """Who was shown a delivery's data, newest first: ``{revealed_by, revealed_at, what, via, client}``."""
    rows = await conn.fetch(
        "SELECT revealed_by, revealed_at, what, via, client FROM reveals WHERE delivery_id = $1"
        " ORDER BY revealed_at DESC LIMIT $2",
        delivery_id,
        limit,
    )
    return [cast(Reveal, dict(r)) for r in rows]


async def listing(
    conn: Conn,
    *,
    org_id: uuid.UUID | None = None,
    by: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Accesses, newest first, for the clinics this connection sees: ``{id, revealed_at, org_id, org_name,
    delivery_id, what, revealed_by, via, token_id, client}``.

    Args:
        org_id: One clinic only.
        by: Whose: a token id, or text found (case-insensitive) in the recorded person.
        since, until: ``revealed_at`` from (inclusive) and before (exclusive).
    """
    token = _uuid(by)
    rows = await conn.fetch(
        "SELECT r.id, r.revealed_at, r.org_id, o.name AS org_name, r.delivery_id, r.what, r.revealed_by, r.via,"
        "       r.token_id, r.client"
        "  FROM reveals r JOIN organizations o ON o.id = r.org_id"
        " WHERE ($1::uuid IS NULL OR r.org_id = $1)"
        "   AND ($2::text IS NULL OR r.token_id = $3 OR strpos(lower(r.revealed_by), lower($2)) > 0)"
        "   AND ($4::timestamptz IS NULL OR r.revealed_at >= $4)"
        "   AND ($5::timestamptz IS NULL OR r.revealed_at < $5)"
        " ORDER BY r.revealed_at DESC, r.id DESC LIMIT $6",
        org_id,
        by,
        token,
        since,
        until,
        limit,
    )
    return [dict(r) for r in rows]


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None
