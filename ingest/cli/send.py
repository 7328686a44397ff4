"""``send``: post payload files signed as Vapi would (a local stand-in for Vapi's cloud)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from ingest.cli.support import settings as _settings


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--url", default=None, help="Receiver URL [default: http://127.0.0.1:$PORT/webhooks/vapi].")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1000))
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 100000))
def send(paths: tuple[Path, ...], url: str | None, concurrency: int, repeat: int) -> None:
    """Post payload files (or directories of *.json) signed as Vapi would; print a summary."""
    import json

    from ingest.sender import collect_files
    from ingest.sender import send as send_files

    settings = _settings()
    try:
        files = collect_files(list(paths))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    target = url or f"http://127.0.0.1:{settings.port}/webhooks/vapi"
    report = asyncio.run(send_files(settings, files, target, concurrency=concurrency, repeat=repeat))
    for name, reply in report.tool_replies:
        click.echo(f"{name}: {json.dumps(reply)}")
    for name, error in report.errors[:5]:
        click.echo(f"{name}: {error}", err=True)
    if len(report.errors) > 5:
        click.echo(f"... and {len(report.errors) - 5} more request(s) failed", err=True)
    summary = ", ".join(f"{status}: {n}" for status, n in sorted(report.statuses.items()))
    if report.errors:
        summary = ", ".join(filter(None, [summary, f"no answer: {len(report.errors)}"]))
    click.echo(f"sent {len(files) * repeat} request(s) to {target}; {summary}")
    if report.errors or any(status >= 300 for status in report.statuses):
        sys.exit(1)
