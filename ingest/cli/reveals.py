"""``reveals list``: the access record, who was shown patient data, by clinic, person and time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from db import reveals as reveals_db
from db.types import Conn
from ingest.cli.output import print_table, short_id
from ingest.cli.support import resolve, time_option, with_conn
from ingest.cli.support import run_async as _run


@click.group()
def reveals() -> None:
    """The access record: every time patient data from a stored message was shown, and to whom."""


@reveals.command("list")
@click.option("--org", help="One organization (id or unique prefix): whom to tell who looked at its patients' calls.")
@click.option("--by", help="One person: a token id, or text of the recorded name (an admin token's name, user@host).")
@click.option("--since", callback=time_option, help="At or after (ISO 8601 with zone).")
@click.option("--until", callback=time_option, help="Before (ISO 8601 with zone).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
def reveals_list(
    org: str | None, by: str | None, since: datetime | None, until: datetime | None, limit: int, as_json: bool
) -> None:
    """List accesses, newest first: when, clinic, what (payload, caller, a page), who, how, from where."""

    async def fetch(conn: Conn) -> list[dict[str, Any]]:
        org_id = await resolve(conn, "organizations", org) if org else None
        return await reveals_db.listing(conn, org_id=org_id, by=by, since=since, until=until, limit=limit)

    rows = _run(with_conn(fetch))
    print_table(
        rows,
        [
            ("when", lambda r: f"{r['revealed_at']:%Y-%m-%d %H:%M:%S}"),
            ("clinic", lambda r: r["org_name"]),
            ("what", lambda r: r["what"]),
            ("delivery", lambda r: short_id(r["delivery_id"])),
            ("who", lambda r: r["revealed_by"]),
            ("via", lambda r: r["via"]),
            ("from", lambda r: r["client"] or ""),
        ],
        noun=("access", "accesses"),
        as_json=as_json,
    )
