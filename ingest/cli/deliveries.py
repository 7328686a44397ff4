"""``deliveries list|show|replay``: the 3 a.m. story: see what failed and why, fix it, replay exactly those,
counted first, with progress, stoppable with Ctrl-C."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
import uuid
from typing import Any

import click

from db import reports, reveals
from db.filters import DeliveryFilter
from db.statuses import REPLAYABLE, STATUSES
from db.types import Conn
from ingest.cli.output import json_lines, print_table, progress_bar, short_id
from ingest.cli.support import open_pool, operator, resolve, time_option, with_conn
from ingest.cli.support import run_async as _run
from ingest.cli.support import settings as _settings
from ingest.settings import Settings

#: Deliveries per replay batch (one transaction, one Redis round of sends).
REPLAY_BATCH = 500


def filter_options(fn: Any) -> Any:
    """The filters shared by ``list`` and ``replay``."""
    for option in reversed(
        [
            click.option(
                "--status",
                "statuses",
                multiple=True,
                type=click.Choice([s.value for s in STATUSES]),
                help="Any of these statuses (repeatable).",
            ),
            click.option("--org", "org_id", help="Organization id (or a unique prefix)."),
            click.option("--type", "event_type", help="Message type, e.g. status-update."),
            click.option("--since", callback=time_option, help="Received at or after (ISO 8601 with zone)."),
            click.option("--until", callback=time_option, help="Received before (ISO 8601 with zone)."),
            click.option("--error", help="Substring of the last error (case-insensitive)."),
            click.option("--call", "vapi_call_id", help="Vapi call id (call.id): that call's deliveries."),
        ]
    ):
        fn = option(fn)
    return fn


@click.group()
def deliveries() -> None:
    """Inspect and replay deliveries (the webhook_delivery_log)."""


async def _filter(conn: Conn, filters: dict[str, Any], ids: tuple[uuid.UUID, ...] = ()) -> DeliveryFilter:
    """The filter the options describe, with ``--org`` resolved from a prefix."""
    org = filters.pop("org_id", None)
    org_id = await resolve(conn, "organizations", org) if org else None
    return DeliveryFilter(**{**filters, "org_id": org_id, "statuses": tuple(filters["statuses"]), "ids": ids})


#: Rows a table shows unless --limit says otherwise.
TABLE_LIMIT = 50
#: Rows per query while --json streams every match.
JSON_PAGE = 1000


@deliveries.command("list")
@filter_options
@click.option(
    "--limit",
    default=None,
    type=click.IntRange(1, 100_000),
    help=f"At most this many, newest first [default: {TABLE_LIMIT} for the table; with --json, every match].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts (every match).")
def list_cmd(as_json: bool, limit: int | None, **filters: Any) -> None:
    """List deliveries, newest first: a table for people, JSON lines with --json.

    --json writes every match unless --limit is given (``| wc -l`` counts them all), a page of
    :data:`JSON_PAGE` at a time, so memory stays flat however many match.
    """
    if as_json and limit is None:
        _run(with_conn(lambda conn: _stream_json(conn, filters)))
        return
    limit = limit or TABLE_LIMIT

    async def fetch(conn: Conn) -> tuple[list[reports.DeliveryRow], int]:
        flt = await _filter(conn, filters)
        rows = await reports.list_deliveries(conn, flt, limit=limit)
        # Counting is a second scan; only pay for it when the page is full.
        total = await reports.count(conn, flt) if len(rows) == limit else len(rows)
        return rows, total

    rows, total = _run(with_conn(fetch))
    print_table(
        rows,
        [
            ("id", lambda r: short_id(r["id"])),
            ("type", lambda r: r["event_type"]),
            ("status", lambda r: r["status"]),
            ("attempts", lambda r: f"{r['attempts']}/{r['max_attempts']}"),
            ("received", lambda r: f"{r['received_at']:%Y-%m-%d %H:%M:%S}"),
            ("last error", lambda r: (r["error_message"] or "")[:80]),
        ],
        noun=("delivery", "deliveries"),
        total=total,
        as_json=as_json,
    )


async def _stream_json(conn: Conn, filters: dict[str, Any]) -> None:
    """Every matching delivery as JSON lines, newest first, by keyset pages; then the count on stderr."""
    flt = await _filter(conn, filters)
    shown = 0
    while rows := await reports.list_deliveries(conn, flt, limit=JSON_PAGE):
        json_lines(rows)
        shown += len(rows)
        flt = dataclasses.replace(flt, older_than=(rows[-1]["received_at"], rows[-1]["id"]))
    click.echo(f"{shown} {'delivery' if shown == 1 else 'deliveries'}", err=True)


@deliveries.command("show")
@click.argument("delivery_id")
def show_cmd(delivery_id: str) -> None:
    """Show one delivery by id or unique prefix: payload (secrets redacted), attempts, every error, timestamps.

    The payload may hold patient data: the access is recorded first (``reveals``: the operating-system
    user and host; ``reveals list`` shows it)."""
    from workers.sanitize import redact

    async def fetch(conn: Conn) -> reports.DeliveryDetail | None:
        found = await resolve(conn, "webhook_delivery_log", delivery_id)
        async with conn.transaction():
            if not await reveals.record_delivery(conn, operator(), found, "payload"):
                return None
            return await reports.get_delivery(conn, found)

    row = _run(with_conn(fetch))
    if row is None:
        raise click.ClickException(f"no delivery {delivery_id}")
    row["payload"] = redact(row["payload"])
    click.echo(json.dumps(row, default=str, indent=2))


@deliveries.command("replay")
@click.argument("ids", nargs=-1)
@filter_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, help="At most N deliveries per second.")
def replay_cmd(ids: tuple[str, ...], yes: bool, dry_run: bool, rate: float | None, **filters: Any) -> None:
    """Replay failed/dead-lettered deliveries by id (or unique prefix), or by --status dead_letter|failed and filters.

    Each gets a fresh attempt budget and is processed again; handlers are
    idempotent and completed deliveries are never replayed, so nothing is
    applied twice. Synchronous tool calls are never replayed (their caller has
    gone; see --status missed). Ctrl-C stops after the current batch and says
    how far it got.
    """
    statuses = tuple(filters.pop("statuses"))
    if not ids and not statuses:
        raise click.UsageError("give delivery ids, or --status dead_letter / --status failed")
    if any(s not in REPLAYABLE for s in statuses):
        raise click.BadParameter("only failed and dead_letter deliveries are replayed", param_hint="--status")
    # By id, every status is looked at, so a missed tool call is refused with the reason, not just unmatched.
    filters["statuses"] = statuses or (() if ids else tuple(REPLAYABLE))
    settings = _settings()
    if not _run(_replay(settings, ids, filters, yes=yes, dry_run=dry_run, rate=rate)):
        sys.exit(130)  # the shell's code for "stopped by SIGINT", after saying how far it got


async def _replay(
    settings: Settings, ids: tuple[str, ...], filters: dict[str, Any], *, yes: bool, dry_run: bool, rate: float | None
) -> bool:
    """Count, confirm and replay; False if Ctrl-C stopped it part-way."""
    from workers.broker import build_broker
    from workers.replay import REFUSED_TOOL_CALLS, replay

    pool = await open_pool(settings)
    broker = build_broker(settings.redis_url)
    try:
        async with pool.acquire() as conn:
            resolved = tuple([await resolve(conn, "webhook_delivery_log", text) for text in ids])
            flt = await _filter(conn, filters, resolved)
            matched, refused = await reports.replay_counts(conn, flt)
        click.echo(f"{matched} deliver{'y' if matched == 1 else 'ies'} match")
        if refused:
            click.echo(f"{refused} not replayed: {REFUSED_TOOL_CALLS}")
        if dry_run or matched == 0:
            return True
        if not yes and not await asyncio.to_thread(click.confirm, f"Replay {matched}?", default=False):
            click.echo("nothing replayed")
            return True
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        done = 0
        with progress_bar("replaying", matched) as progress:
            task = progress.add_task("replay", total=matched)

            def advance(n: int) -> None:
                nonlocal done
                done += n
                progress.advance(task, n)

            await replay(
                pool,
                broker,
                flt,
                budget=settings.retry_max_attempts,
                batch_size=REPLAY_BATCH,
                rate_per_s=rate,
                on_progress=advance,
                should_stop=stop.is_set,
                # At most two batches ahead of the workers: the pace (and --rate) is processing.
                max_backlog=REPLAY_BATCH,
            )
        loop.remove_signal_handler(signal.SIGINT)
        if stop.is_set():
            click.echo(f"stopped by Ctrl-C: replayed {done} of {matched}; run the same command again to continue")
            return False
        click.echo(f"replayed {done} of {matched}")
        return True
    finally:
        await pool.close()
        broker.close()
