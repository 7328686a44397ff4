"""``quarantine list|route``: messages no organization matched, routed explicitly once their sender is mapped."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import asyncpg
import click
from rich.console import Console
from rich.table import Table

from db import quarantine as quarantine_db
from db.errors import AlreadyMapped, OrgNotFound
from db.quarantine import Routed
from db.types import Conn, OrgId
from ingest.cli.output import print_table, short_id
from ingest.cli.support import open_pool, resolve, with_conn
from ingest.cli.support import run_async as _run
from ingest.cli.support import settings as _settings


@click.group()
def quarantine() -> None:
    """Messages no organization matched: list them, and route them once mapped."""


def quarantine_filters(fn: Any) -> Any:
    """Filters of the quarantine commands."""
    fn = click.option("--type", "event_type", help="Message type.")(fn)
    fn = click.option("--phone-number-id", help="Vapi phone number id.")(fn)
    return click.option("--assistant-id", help="Vapi assistant id.")(fn)


@quarantine.command("list")
@quarantine_filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
def quarantine_list(limit: int, as_json: bool, **filters: Any) -> None:
    """List unrouted messages, oldest first."""

    async def fetch(conn: Conn) -> tuple[list[dict[str, Any]], int]:
        rows = await quarantine_db.list_unrouted(conn, limit=limit, **filters)
        total = await quarantine_db.count_unrouted(conn, **filters) if len(rows) == limit else len(rows)
        return rows, total

    rows, total = _run(with_conn(fetch))
    print_table(
        rows,
        [
            ("id", lambda r: short_id(r["id"])),
            ("type", lambda r: r["event_type"]),
            ("received", lambda r: f"{r['received_at']:%Y-%m-%d %H:%M:%S}"),
            ("assistant", lambda r: r["assistant_id"]),
            ("phone number", lambda r: r["phone_number_id"]),
        ],
        noun=("unrouted message", "unrouted messages"),
        total=total,
        as_json=as_json,
    )


@quarantine.command("route")
@click.option("--org", required=True, help="The organization to route them to (id or unique prefix).")
@quarantine_filters
@click.option("--all", "route_all", is_flag=True, help="Route every unrouted message, from any sender, to --org.")
@click.option("--yes", is_flag=True, help="With --all: do not ask (required without a terminal).")
def quarantine_route(org: str, route_all: bool, yes: bool, **filters: Any) -> None:
    """Map an assistant or phone number to --org, and move its unrouted messages into the delivery log.

    The mapping is created in the same transaction as the move, so later
    messages route by themselves. With --type only that type's messages move
    and nothing is mapped (the sender's other messages stay unrouted). --all
    moves everything unrouted without mapping anything: it lists the senders
    first and asks.
    """
    from workers.broker import build_broker
    from workers.quarantine import route_sender

    assistant_id, phone_number_id = filters["assistant_id"], filters["phone_number_id"]
    if not (assistant_id or phone_number_id or route_all):
        raise click.UsageError(
            "give --assistant-id or --phone-number-id (mapped to --org as they are routed), or --all"
        )
    if route_all and (assistant_id or phone_number_id):
        raise click.UsageError("--all routes every sender; do not combine it with --assistant-id/--phone-number-id")
    settings = _settings()
    mapping = not route_all and not filters["event_type"]

    async def route() -> Routed | None:
        pool = await open_pool(settings)
        broker = build_broker(settings.redis_url)
        try:
            async with pool.acquire() as conn:
                org_id = await resolve(conn, "organizations", org)
            if route_all and not await _confirm_all(pool, org_id, yes):
                return None
            return await route_sender(
                pool, broker, OrgId(org_id), max_attempts=settings.retry_max_attempts, map_sender=mapping, **filters
            )
        finally:
            await pool.close()
            broker.close()

    try:
        routed = _run(route())
    except (AlreadyMapped, OrgNotFound) as exc:
        raise click.ClickException(str(exc)) from None
    if routed is not None:
        click.echo(_route_report(routed, org, mapping, filters))


def _route_report(routed: Routed, org: str, mapped: bool, filters: dict[str, Any]) -> str:
    """What ``route`` did, in one line: what it mapped, what it moved and queued, or why nothing moved."""
    sender = " and ".join(
        f"{what} {value}"
        for what, value in (("assistant", filters["assistant_id"]), ("phone number", filters["phone_number_id"]))
        if value
    )
    mapped_part = f"mapped {sender} to {org}; " if mapped else ""
    if routed.moved == 0:
        matched = ", ".join(
            part for part in (sender, f"type {filters['event_type']}" if filters["event_type"] else "") if part
        )
        return f"{mapped_part}nothing unrouted matches {matched or 'anything'}, so nothing moved"
    queued = len(routed.queued)
    report = (
        f"{mapped_part}moved {routed.moved} message{'' if routed.moved == 1 else 's'}, {queued} queued for processing"
    )
    if queued < routed.moved:
        report += " (the rest: tool calls answered while unroutable, or keys the clinic already had)"
    if filters["event_type"] and not mapped:
        report += f"; {sender or 'no sender'} not mapped: --type routes only those messages"
    return report


async def _confirm_all(pool: asyncpg.Pool, org_id: uuid.UUID, yes: bool) -> bool:
    """List who sent the unrouted messages; ask before moving them all (refuse without a terminal)."""
    senders = await quarantine_db.senders(pool)
    if not senders:
        click.echo("nothing is unrouted")
        return True
    table = Table("assistant", "phone number", "messages")
    for row in senders:
        table.add_row(row["assistant_id"] or "", row["phone_number_id"] or "", str(row["messages"]))
    Console().print(table)
    total = await quarantine_db.count_unrouted(pool)
    if total > sum(r["messages"] for r in senders):
        click.echo("(the largest senders only; more sent fewer messages each)")
    if yes:
        return True
    if not sys.stdin.isatty():
        raise click.ClickException("--all without a terminal needs --yes (it moves every sender's messages)")
    if await asyncio.to_thread(
        click.confirm,
        f"Move all {total} unrouted message(s) into organization {org_id}?",
        default=False,
    ):
        return True
    click.echo("nothing routed")
    return False
