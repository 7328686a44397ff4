"""Tenant commands: ``orgs``, ``agents``, ``numbers`` (routing Vapi ids to orgs), ``tokens`` (admin API)."""

from __future__ import annotations

import uuid

import click

from db.errors import AlreadyMapped, OrgNotFound
from db.types import Conn
from ingest.cli.support import open_pool
from ingest.cli.support import run_async as _run
from ingest.cli.support import settings as _settings
from ingest.cli.support import uuid_option as _uuid
from ingest.cli.support import with_conn as _with_conn


@click.group()
def orgs() -> None:
    """Manage organizations (tenants)."""


@orgs.command("create")
@click.option("--name", required=True, help="Display name of the clinic.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/London.")
@click.option("--region", default="US", show_default=True, help="Default region for phone numbers (ISO 3166).")
@click.option("--assistant-id", default=None, help="Vapi assistant id: answers assistant-request and routes its calls.")
def orgs_create(name: str, tz: str, region: str, assistant_id: str | None) -> None:
    """Create an organization and print its id."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from db import orgs as orgs_db

    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"{tz!r} is not an IANA time zone", param_hint="--timezone") from None
    if len(region) != 2 or not region.isalpha():
        raise click.BadParameter(f"{region!r} is not a 2-letter region code", param_hint="--region")

    async def create(conn: Conn) -> uuid.UUID:
        async with conn.transaction():
            org_id = await orgs_db.create_org(
                conn, name=name.strip(), timezone=tz, region=region, assistant_id=assistant_id
            )
            if assistant_id:
                await orgs_db.add_agent(conn, org_id, assistant_id)
            return org_id

    try:
        click.echo(_run(_with_conn(create)))
    except AlreadyMapped as exc:
        raise click.ClickException(str(exc)) from None


def _add_route(kind: str, org_id: uuid.UUID, vapi_id: str) -> None:
    from db import orgs as orgs_db

    add = orgs_db.add_agent if kind == "assistant" else orgs_db.add_phone_number
    try:
        click.echo(_run(_with_conn(lambda conn: add(conn, org_id, vapi_id))))
    except (AlreadyMapped, OrgNotFound) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def agents() -> None:
    """Map Vapi assistants to organizations."""


@agents.command("add")
@click.option("--org", "org_id", required=True, callback=_uuid, help="Organization id.")
@click.option("--assistant-id", required=True, help="Vapi assistant id.")
def agents_add(org_id: uuid.UUID, assistant_id: str) -> None:
    """Route messages of a Vapi assistant to an organization."""
    _add_route("assistant", org_id, assistant_id)


@click.group()
def numbers() -> None:
    """Map Vapi phone numbers to organizations."""


@numbers.command("add")
@click.option("--org", "org_id", required=True, callback=_uuid, help="Organization id.")
@click.option("--phone-number-id", required=True, help="Vapi phone number id (not the E.164 number).")
def numbers_add(org_id: uuid.UUID, phone_number_id: str) -> None:
    """Route messages of a Vapi phone number to an organization."""
    _add_route("phone number", org_id, phone_number_id)


@click.group()
def tokens() -> None:
    """Admin API tokens scoped to one organization."""


@tokens.command("create")
@click.option("--org", "org_id", required=True, callback=_uuid, help="The organization the token may see.")
@click.option("--name", default=None, help="A label, e.g. who holds it.")
def tokens_create(org_id: uuid.UUID, name: str | None) -> None:
    """Create a token and print it once (only its SHA-256 is stored)."""
    from db import tokens as tokens_db

    settings = _settings()

    async def store() -> str:
        pool = await open_pool(settings)
        try:
            return await tokens_db.create(pool, org_id, name=name)
        finally:
            await pool.close()

    try:
        click.echo(_run(store()))
    except OrgNotFound as exc:
        raise click.ClickException(str(exc)) from None


COMMANDS = (orgs, agents, numbers, tokens)
