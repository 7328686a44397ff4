"""``send``: post payload files signed as Vapi would (a local stand-in for Vapi's cloud)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ingest.cli.output import PROGRESS_THRESHOLD, progress_bar
from ingest.cli.support import settings as _settings

#: Non-2xx answers whose body is printed; the rest are counted.
SHOWN_FAILURES = 5


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--url", default=None, help="Receiver URL [default: http://127.0.0.1:$PORT/webhooks/vapi].")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1000))
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 100000))
def send(paths: tuple[Path, ...], url: str | None, concurrency: int, repeat: int) -> None:
    """Post payload files (or directories of *.json) signed as Vapi would.

    Prints each file's answers (new, duplicate, quarantined, answered, or the
    status and body of a failure), tool-call replies, and a summary; exits 1
    if any request failed.
    """
    from ingest.sender import collect_files
    from ingest.sender import send as send_files

    settings = _settings(webhook=True)
    try:
        files = collect_files(list(paths))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    target = url or f"http://127.0.0.1:{settings.port}/webhooks/vapi"
    total = len(files) * repeat
    with progress_bar("sending", total, transient=True) as progress:
        task = progress.add_task("send", total=total)
        report = asyncio.run(
            send_files(
                settings,
                files,
                target,
                concurrency=concurrency,
                repeat=repeat,
                on_done=lambda: progress.advance(task),
            )
        )
    if len(files) <= PROGRESS_THRESHOLD:
        for name, answers in report.per_file.items():
            click.echo(f"{name}: " + ", ".join(f"{label} x{n}" if n > 1 else label for label, n in answers.items()))
    for name, reply in report.tool_replies[:PROGRESS_THRESHOLD]:
        click.echo(f"{name} replied: {json.dumps(reply)}")
    for name, status, body in report.failures[:SHOWN_FAILURES]:
        click.echo(f"{name}: {status} {body[:500]}", err=True)
    for name, error in report.errors[:SHOWN_FAILURES]:
        click.echo(f"{name}: no answer: {error}", err=True)
    hidden = max(0, len(report.failures) - SHOWN_FAILURES) + max(0, len(report.errors) - SHOWN_FAILURES)
    if hidden:
        click.echo(f"... and {hidden} more failed request(s)", err=True)
    counts = [f"{n} {outcome}" for outcome, n in sorted(report.outcomes.items())]
    if report.failed:
        counts.append(f"{report.failed} failed")
    click.echo(f"sent {total} request(s) to {target}: " + (", ".join(counts) or "nothing"))
    if report.failed:
        sys.exit(1)
