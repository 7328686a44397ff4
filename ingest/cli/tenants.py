"""Tenant commands: ``orgs``, ``agents`` and ``numbers`` (routing Vapi ids to orgs), ``tokens`` (admin API).

Every ``--org`` and id argument takes a full id or a unique prefix of 8+ hex digits.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from db.errors import AlreadyMapped, OrgNotFound
from db.types import Conn
from ingest import org_fields
from ingest.cli.output import print_table, short_id
from ingest.cli.support import resolve
from ingest.cli.support import run_async as _run
from ingest.cli.support import with_conn as _with_conn

json_option = click.option("--json", "as_json", is_flag=True, help="JSON (one object per line for lists).")


def _field(convert: Any) -> Any:
    """A click callback validating an org field with :mod:`ingest.org_fields`."""

    def check(_: Any, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return check


def _hours_text(hours: dict[str, list[str]]) -> str:
    from workers.hours import BusinessHours

    return BusinessHours(hours).describe()


def _call(fn: Any) -> Any:
    """Run ``fn(conn)`` on one connection; tenant errors become one line."""
    try:
        return _run(_with_conn(fn))
    except (AlreadyMapped, OrgNotFound) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def orgs() -> None:
    """Manage organizations (tenants)."""


@orgs.command("create")
@click.option("--name", required=True, callback=_field(org_fields.name), help="Display name of the clinic.")
@click.option(
    "--timezone",
    "tz",
    default="UTC",
    show_default=True,
    callback=_field(org_fields.timezone),
    help="IANA time zone, e.g. Europe/London.",
)
@click.option(
    "--region",
    default="US",
    show_default=True,
    callback=_field(org_fields.region),
    help="Default region for phone numbers (ISO 3166).",
)
@click.option("--assistant-id", default=None, help="Vapi assistant id: answers assistant-request and routes its calls.")
def orgs_create(name: str, tz: str, region: str, assistant_id: str | None) -> None:
    """Create an organization and print its id."""
    from db import orgs as orgs_db

    async def create(conn: Conn) -> uuid.UUID:
        async with conn.transaction():
            org_id = await orgs_db.create_org(conn, name=name, timezone=tz, region=region, assistant_id=assistant_id)
            if assistant_id:
                await orgs_db.add_agent(conn, org_id, assistant_id)
            return org_id

    click.echo(_call(create))


@orgs.command("list")
@json_option
def orgs_list(as_json: bool) -> None:
    """List organizations with their settings and how many assistants, numbers and live tokens they have."""
    from db import orgs as orgs_db

    rows = _call(orgs_db.list_orgs)
    print_table(
        rows,
        [
            ("id", lambda r: short_id(r["id"])),
            ("name", lambda r: r["name"]),
            ("timezone", lambda r: r["timezone"]),
            ("region", lambda r: r["default_region"]),
            ("hours", lambda r: _hours_text(r["business_hours"])),
            ("assistant", lambda r: r["vapi_assistant_id"]),
            ("assistants", lambda r: r["assistants"]),
            ("numbers", lambda r: r["phone_numbers"]),
            ("tokens", lambda r: r["tokens"]),
        ],
        noun=("organization", "organizations"),
        as_json=as_json,
    )


def _print_org(detail: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(detail, default=str, indent=2))
        return
    click.echo(f"{detail['name']}  ({detail['id']})")
    click.echo(f"  timezone   {detail['timezone']}")
    click.echo(f"  region     {detail['default_region']}")
    click.echo(f"  hours      {_hours_text(detail['business_hours'])}")
    click.echo(f"  assistant  {detail['vapi_assistant_id'] or '-'} (answers assistant-request)")
    for key, label in (("assistants", "assistants"), ("phone_numbers", "numbers")):
        ids = ", ".join(r["vapi_id"] for r in detail[key]) or "-"
        click.echo(f"  {label:<10} {ids}")
    live = [t for t in detail["tokens"] if t["revoked_at"] is None]
    names = ", ".join(f"{short_id(t['id'])} ({t['name'] or 'unnamed'})" for t in live) or "-"
    click.echo(f"  tokens     {names}")


@orgs.command("show")
@click.argument("org")
@json_option
def orgs_show(org: str, as_json: bool) -> None:
    """Show one organization: settings, assistants, phone numbers, tokens."""
    from db import orgs as orgs_db

    async def fetch(conn: Conn) -> orgs_db.OrgDetail | None:
        return await orgs_db.org_detail(conn, await resolve(conn, "organizations", org))

    _print_org(_call(fetch), as_json)


@orgs.command("update")
@click.argument("org")
@click.option("--name", callback=_field(org_fields.name), help="Display name.")
@click.option("--timezone", "tz", callback=_field(org_fields.timezone), help="IANA time zone.")
@click.option("--region", callback=_field(org_fields.region), help="ISO 3166 region for phone numbers.")
@click.option("--assistant-id", help="Vapi assistant answering assistant-request (also mapped to the org).")
@click.option("--no-assistant", is_flag=True, help="Clear the assistant answering assistant-request.")
@click.option("--hours", "opening", multiple=True, metavar="DAY=HH:MM-HH:MM", help="Opening hours of a day.")
@click.option("--closed", multiple=True, metavar="DAY", help="Closed on this weekday (mon..sun).")
@json_option
def orgs_update(
    org: str,
    name: str | None,
    tz: str | None,
    region: str | None,
    assistant_id: str | None,
    no_assistant: bool,
    opening: tuple[str, ...],
    closed: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change an organization's name, time zone, region, assistant or business hours; print the result.

    Hours change only the days named: ``--hours sat=09:00-12:00 --closed fri``.
    """
    from db import orgs as orgs_db

    if assistant_id and no_assistant:
        raise click.UsageError("give --assistant-id or --no-assistant, not both")
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("name", name),
            ("timezone", tz),
            ("default_region", region),
            ("vapi_assistant_id", assistant_id),
        )
        if value is not None
    }
    if no_assistant:
        changes["vapi_assistant_id"] = None
    if not changes and not opening and not closed:
        raise click.UsageError("nothing to change: give --name, --timezone, --region, --assistant-id or --hours")

    async def update(conn: Conn) -> orgs_db.OrgDetail | None:
        org_id = await resolve(conn, "organizations", org)
        if opening or closed:
            current = await orgs_db.get_org(conn, org_id)
            try:
                changes["business_hours"] = org_fields.hours_changes(
                    current.business_hours if current else {}, opening, closed
                )
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--hours/--closed") from None
        await orgs_db.update_org(conn, org_id, changes)
        return await orgs_db.org_detail(conn, org_id)

    _print_org(_call(update), as_json)


def _route_commands(group: click.Group, kind: str, option: str, help_id: str) -> None:
    """``add``, ``list`` and ``remove`` for one routing table (assistants or phone numbers)."""
    from db import orgs as orgs_db

    add_fn = orgs_db.add_agent if kind == "assistant" else orgs_db.add_phone_number

    @group.command("add", help=f"Route messages of a Vapi {kind} to an organization; print the mapping's id.")
    @click.option("--org", required=True, help="Organization id (or a unique prefix).")
    @click.option(f"--{option}", "vapi_id", required=True, help=help_id)
    def add(org: str, vapi_id: str) -> None:
        async def run(conn: Conn) -> uuid.UUID:
            return await add_fn(conn, await resolve(conn, "organizations", org), vapi_id)

        click.echo(_call(run))

    @group.command("list", help=f"List which organization each Vapi {kind} routes to.")
    @click.option("--org", help="Only this organization.")
    @json_option
    def list_(org: str | None, as_json: bool) -> None:
        async def run(conn: Conn) -> list[orgs_db.RouteRow]:
            org_id = await resolve(conn, "organizations", org) if org else None
            return await orgs_db.list_routes(conn, kind, org_id)

        print_table(
            _call(run),
            [
                (kind, lambda r: r["vapi_id"]),
                ("org", lambda r: short_id(r["org_id"])),
                ("org name", lambda r: r["org_name"]),
                ("since", lambda r: f"{r['created_at']:%Y-%m-%d %H:%M}"),
            ],
            noun=(f"{kind} mapping", f"{kind} mappings"),
            as_json=as_json,
        )

    @group.command(
        "remove",
        help=f"Stop routing a Vapi {kind}: its messages are quarantined (or go to VAPI_DEFAULT_ORG_ID) "
        "within the receiver's 5 s routing cache.",
    )
    @click.argument("vapi_id")
    def remove(vapi_id: str) -> None:
        async def run(conn: Conn) -> uuid.UUID | None:
            return await orgs_db.remove_route(conn, kind, vapi_id)

        org_id = _call(run)
        if org_id is None:
            raise click.ClickException(f"{kind} {vapi_id} is not mapped to any organization")
        click.echo(f"{kind} {vapi_id} no longer routes to {org_id}; its messages are quarantined from now on")


@click.group()
def agents() -> None:
    """Map Vapi assistants to organizations."""


@click.group()
def numbers() -> None:
    """Map Vapi phone numbers to organizations."""


_route_commands(agents, "assistant", "assistant-id", "Vapi assistant id.")
_route_commands(numbers, "phone number", "phone-number-id", "Vapi phone number id (not the E.164 number).")


@click.group()
def tokens() -> None:
    """API and console tokens: a clinic's (one organization) or an operator's own admin token."""


@tokens.command("create")
@click.option("--org", default=None, help="The organization the token may see (id or unique prefix).")
@click.option("--admin", "admin", is_flag=True, help="An operator's admin token: every organization.")
@click.option("--name", default=None, help="Who holds it; required with --admin (access records name them by it).")
def tokens_create(org: str | None, admin: bool, name: str | None) -> None:
    """Create a token and print it once (only its SHA-256 is stored): --org for a clinic, or --admin --name
    for an operator (ADMIN_TOKEN stays the break-glass credential)."""
    from db import tokens as tokens_db

    if admin == bool(org):
        raise click.UsageError("give either --org (a clinic's token) or --admin --name (an operator's)")
    if admin and not (name or "").strip():
        raise click.UsageError("--admin needs --name: access records name the person by it")

    async def store(conn: Conn) -> str:
        if admin:
            return await tokens_db.create_admin(conn, name=(name or "").strip())
        return await tokens_db.create(conn, await resolve(conn, "organizations", org or ""), name=name)

    click.echo(_call(store))


@tokens.command("list")
@click.option("--org", help="Only this organization's tokens.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked tokens.")
@json_option
def tokens_list(org: str | None, show_all: bool, as_json: bool) -> None:
    """List tokens (never their value): id, organization, label, created, last used (to a minute), revoked."""
    from db import tokens as tokens_db

    async def run(conn: Conn) -> list[tokens_db.TokenRow]:
        org_id = await resolve(conn, "organizations", org) if org else None
        return await tokens_db.list_tokens(conn, org_id)

    rows = [r for r in _call(run) if show_all or r["revoked_at"] is None]
    print_table(
        rows,
        [
            ("id", lambda r: short_id(r["id"])),
            ("org", lambda r: short_id(r["org_id"]) if r["org_id"] else "(admin)"),
            ("org name", lambda r: r["org_name"] or "every organization"),
            ("name", lambda r: r["name"]),
            ("created", lambda r: f"{r['created_at']:%Y-%m-%d %H:%M}"),
            ("last used", lambda r: f"{r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never"),
            ("revoked", lambda r: f"{r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else ""),
        ],
        noun=("token", "tokens"),
        as_json=as_json,
    )


@tokens.command("revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token by its id (from `tokens list`): refused from its next request on."""
    from db import tokens as tokens_db

    async def run(conn: Conn) -> tuple[uuid.UUID, bool]:
        found = await resolve(conn, "api_tokens", token_id)
        return found, await tokens_db.revoke(conn, found)

    found, revoked = _call(run)
    if not revoked:
        raise click.ClickException(f"token {found} was already revoked")
    click.echo(f"revoked token {found}")


COMMANDS = (orgs, agents, numbers, tokens)
