"""How commands print rows: a table for a person, full ids and no truncation for a pipe, JSON lines on request.

On a terminal, ids are shortened to their first 8 hex digits (every command
accepts such a prefix back); anywhere else they are printed whole, and the
table is never cut to a terminal's width.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from db.ids import MIN_PREFIX

#: Work of more items than this shows a progress bar (on a terminal).
PROGRESS_THRESHOLD = 50

#: A column: header, and how to show a row's value.
Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def to_terminal() -> bool:
    """True when standard output is a terminal a person reads."""
    return sys.stdout.isatty()


def short_id(value: uuid.UUID | str | None) -> str:
    """An id as a person reads it: its first 8 hex digits on a terminal, all of it elsewhere."""
    if value is None:
        return ""
    return str(value)[:MIN_PREFIX] if to_terminal() else str(value)


def json_lines(rows: Sequence[Mapping[str, Any]]) -> None:
    """One JSON object per row (ids and times as strings), for scripts."""
    for row in rows:
        click.echo(json.dumps(row, default=str))


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    noun: tuple[str, str],
    total: int | None = None,
    as_json: bool = False,
) -> None:
    """Print ``rows`` as a table (or JSON lines), then a count line on stderr.

    Args:
        noun: Singular and plural, e.g. ``("delivery", "deliveries")``.
        total: How many match in all, when ``rows`` may be cut by ``--limit``.
    """
    if as_json:
        json_lines(rows)
    else:
        table = Table(*(header for header, _ in columns))
        for row in rows:
            table.add_row(*(_cell(show(row)) for _, show in columns))
        # Off a terminal rich would wrap to 80 columns and cut ids; a pipe gets every character.
        Console(width=None if to_terminal() else 100_000).print(table)
    shown = len(rows)
    word = noun[0] if (total if total is not None else shown) == 1 else noun[1]
    if total is not None and total > shown:
        click.echo(f"showing {shown} of {total} {word} (use --limit)", err=True)
    else:
        click.echo(f"{shown} {word}", err=True)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def progress_bar(label: str, total: int, *, transient: bool = False) -> Progress:
    """A progress bar on standard error ("<label> ━━━ 120/400 0:00:03"), shown only on a terminal and for
    more than :data:`PROGRESS_THRESHOLD` items; ``transient`` removes it when done."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=total <= PROGRESS_THRESHOLD or not sys.stderr.isatty(),
        console=Console(stderr=True),
        transient=transient,
    )
