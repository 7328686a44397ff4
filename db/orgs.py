"""Tenants (organizations) and the Vapi ids that route messages to them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from db.errors import AlreadyMapped, OrgNotFound
from db.types import Executor, OrgId


@dataclass(frozen=True, slots=True)
class Org:
    """A tenant: a clinic.

    Attributes:
        timezone: IANA name; times without an offset are local to it.
        default_region: ISO 3166 alpha-2 region for phone numbers without a country code.
        vapi_assistant_id: The answer to ``assistant-request``.
        business_hours: Opening hours per weekday, ``{"mon": ["09:00", "17:00"], ...}``;
            a missing day is closed.
    """

    id: OrgId
    name: str
    timezone: str
    default_region: str
    vapi_assistant_id: str | None
    business_hours: dict[str, list[str]]

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Org:
        return cls(
            row["id"],
            row["name"],
            row["timezone"],
            row["default_region"],
            row["vapi_assistant_id"],
            row["business_hours"],
        )


_ORG_COLUMNS = "o.id, o.name, o.timezone, o.default_region, o.vapi_assistant_id, o.business_hours"


async def create_org(
    conn: Executor,
    *,
    name: str,
    timezone: str = "UTC",
    region: str = "US",
    assistant_id: str | None = None,
) -> uuid.UUID:
    """Create an organization and return its id."""
    result: uuid.UUID = await conn.fetchval(
        "INSERT INTO organizations (name, timezone, default_region, vapi_assistant_id)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        name,
        timezone,
        region.upper(),
        assistant_id,
    )
    return result


async def add_agent(conn: Executor, org_id: uuid.UUID, assistant_id: str) -> uuid.UUID:
    """Route messages of a Vapi assistant to ``org_id``.

    Raises:
        AlreadyMapped: the assistant already belongs to an org.
        OrgNotFound: no such org.
    """
    return await _add_route(conn, "agents", "vapi_assistant_id", "assistant", org_id, assistant_id)


async def add_phone_number(conn: Executor, org_id: uuid.UUID, phone_number_id: str) -> uuid.UUID:
    """Route messages of a Vapi phone number to ``org_id`` (errors as :func:`add_agent`)."""
    return await _add_route(conn, "phone_numbers", "vapi_phone_number_id", "phone number", org_id, phone_number_id)


async def _add_route(conn: Executor, table: str, column: str, label: str, org_id: uuid.UUID, vapi_id: str) -> uuid.UUID:
    try:
        result: uuid.UUID = await conn.fetchval(
            f"INSERT INTO {table} (org_id, {column}) VALUES ($1, $2) RETURNING id", org_id, vapi_id
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != f"{table}_{column}_key":
            raise
        raise AlreadyMapped(f"{label} {vapi_id} already belongs to an organization") from None
    except asyncpg.ForeignKeyViolationError as exc:
        if exc.constraint_name != f"{table}_org_id_fkey":
            raise
        raise OrgNotFound(f"no organization with id {org_id}") from None
    return result


async def get_org(conn: Executor, org_id: uuid.UUID) -> Org | None:
    """The organization with this id, if any."""
    row = await conn.fetchrow(f"SELECT {_ORG_COLUMNS} FROM organizations o WHERE o.id = $1", org_id)
    return Org.from_record(row) if row else None


async def route(
    conn: Executor,
    *,
    assistant_id: str | None,
    phone_number_id: str | None,
    default_org_id: uuid.UUID | None,
) -> Org | None:
    """Find the tenant of a message in one round trip.

    Precedence: the assistant (agents table), then the phone number
    (phone_numbers table), then ``default_org_id``.

    Returns:
        The org, or ``None`` when nothing matches (the caller quarantines).
    """
    row = await conn.fetchrow(
        f"""
        SELECT {_ORG_COLUMNS} FROM (
            SELECT org_id, 1 AS rank FROM agents WHERE vapi_assistant_id = $1
            UNION ALL SELECT org_id, 2 FROM phone_numbers WHERE vapi_phone_number_id = $2
            UNION ALL SELECT $3::uuid, 3 WHERE $3::uuid IS NOT NULL
        ) m JOIN organizations o ON o.id = m.org_id
        ORDER BY m.rank LIMIT 1
        """,
        assistant_id,
        phone_number_id,
        default_org_id,
    )
    return Org.from_record(row) if row else None
