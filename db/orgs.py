"""Tenants (organizations) and the Vapi ids that route messages to them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast

import asyncpg

from db.errors import AlreadyMapped, OrgNotFound
from db.tokens import TokenRow, list_tokens
from db.types import Conn, Executor, OrgId


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
) -> OrgId:
    """Create an organization and return its id."""
    result: OrgId = await conn.fetchval(
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


#: Routing tables by kind, as (table, Vapi id column).
ROUTE_TABLES = {"assistant": ("agents", "vapi_assistant_id"), "phone number": ("phone_numbers", "vapi_phone_number_id")}


class OrgSettings(TypedDict):
    """An org's own settings, as stored."""

    id: uuid.UUID
    name: str
    timezone: str
    default_region: str
    vapi_assistant_id: str | None
    business_hours: dict[str, Any]
    created_at: datetime


class OrgRow(OrgSettings):
    """An org with counts of what routes to it (:func:`list_orgs`): mapped assistants, mapped phone numbers,
    live tokens."""

    assistants: int
    phone_numbers: int
    tokens: int


class RouteRow(TypedDict):
    """One mapping of a Vapi assistant or phone number id to an org."""

    id: uuid.UUID
    org_id: uuid.UUID
    org_name: str
    vapi_id: str
    created_at: datetime


class OrgDetail(OrgSettings):
    """One org's settings with its mappings and tokens (:func:`org_detail`)."""

    assistants: list[RouteRow]
    phone_numbers: list[RouteRow]
    tokens: list[TokenRow]


class Clinic(TypedDict):
    """What a page showing a delivery says about its clinic."""

    name: str
    timezone: str


async def list_orgs(conn: Executor) -> list[OrgRow]:
    """Every org with what routes to it: ``{id, name, timezone, default_region, vapi_assistant_id,
    business_hours, created_at, assistants, phone_numbers, tokens}`` (the last three are counts of
    mappings and live tokens), oldest first."""
    rows = await conn.fetch(
        f"""
        SELECT {_ORG_COLUMNS}, o.created_at,
               (SELECT count(*) FROM agents a WHERE a.org_id = o.id) AS assistants,
               (SELECT count(*) FROM phone_numbers p WHERE p.org_id = o.id) AS phone_numbers,
               (SELECT count(*) FROM api_tokens t WHERE t.org_id = o.id AND t.revoked_at IS NULL) AS tokens
          FROM organizations o ORDER BY o.created_at, o.id
        """
    )
    return [cast(OrgRow, dict(r)) for r in rows]


async def org_detail(conn: Executor, org_id: uuid.UUID) -> OrgDetail | None:
    """One org's settings with its assistants, phone numbers and tokens, or None."""
    row = await conn.fetchrow(f"SELECT {_ORG_COLUMNS}, o.created_at FROM organizations o WHERE o.id = $1", org_id)
    if row is None:
        return None
    return OrgDetail(
        **cast(OrgSettings, dict(row)),
        assistants=await list_routes(conn, "assistant", org_id),
        phone_numbers=await list_routes(conn, "phone number", org_id),
        tokens=await list_tokens(conn, org_id),
    )


async def update_org(conn: Conn, org_id: uuid.UUID, changes: dict[str, Any]) -> bool:
    """Set some of ``name``, ``timezone``, ``default_region``, ``vapi_assistant_id``, ``business_hours``.

    Values are validated by the caller (:mod:`ingest.org_fields`); ``None`` for
    ``vapi_assistant_id`` clears it. A new assistant id is also mapped to the org
    (as ``orgs create`` does), in the same transaction.

    Returns:
        False if there is no such org.

    Raises:
        AlreadyMapped: the assistant id routes to another org.
        KeyError: a column not in that list (a programming error).
    """
    allowed = ("name", "timezone", "default_region", "vapi_assistant_id", "business_hours")
    unknown = set(changes) - set(allowed)
    if unknown:
        raise KeyError(f"not an org setting: {sorted(unknown)}")
    columns = list(changes)
    async with conn.transaction():
        if not columns:
            return await get_org(conn, org_id) is not None
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
        status = await conn.execute(
            f"UPDATE organizations SET {sets} WHERE id = $1", org_id, *(changes[c] for c in columns)
        )
        if status != "UPDATE 1":
            return False
        assistant_id = changes.get("vapi_assistant_id")
        if assistant_id:
            mapped = await conn.fetchval("SELECT org_id FROM agents WHERE vapi_assistant_id = $1", assistant_id)
            if mapped is None:
                await add_agent(conn, org_id, assistant_id)
            elif mapped != org_id:
                raise AlreadyMapped(f"assistant {assistant_id} already belongs to an organization")
        return True


async def list_routes(conn: Executor, kind: str, org_id: uuid.UUID | None = None) -> list[RouteRow]:
    """Mappings of one kind (``assistant`` or ``phone number``): ``{id, org_id, org_name, vapi_id, created_at}``."""
    table, column = ROUTE_TABLES[kind]
    rows = await conn.fetch(
        f"SELECT r.id, r.org_id, o.name AS org_name, r.{column} AS vapi_id, r.created_at"
        f"  FROM {table} r JOIN organizations o ON o.id = r.org_id"
        f" WHERE $1::uuid IS NULL OR r.org_id = $1 ORDER BY o.name, r.created_at",
        org_id,
    )
    return [cast(RouteRow, dict(r)) for r in rows]


async def remove_route(conn: Executor, kind: str, vapi_id: str) -> uuid.UUID | None:
    """Stop routing a Vapi assistant or phone number id; the org it routed to, or None if it was not mapped.

    Messages from it are quarantined afterwards (unless VAPI_DEFAULT_ORG_ID catches them),
    within the receiver's routing cache TTL.
    """
    table, column = ROUTE_TABLES[kind]
    org_id: uuid.UUID | None = await conn.fetchval(f"DELETE FROM {table} WHERE {column} = $1 RETURNING org_id", vapi_id)
    return org_id


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


async def clinics_by_id(conn: Executor, org_ids: set[uuid.UUID]) -> dict[uuid.UUID, Clinic]:
    """``{org_id: {name, timezone}}`` of the clinics among ``org_ids`` this session sees, for pages that
    show deliveries (whom to call back, and in which time zone its times are)."""
    rows = await conn.fetch("SELECT id, name, timezone FROM organizations WHERE id = ANY($1::uuid[])", list(org_ids))
    return {r["id"]: Clinic(name=r["name"], timezone=r["timezone"]) for r in rows}
