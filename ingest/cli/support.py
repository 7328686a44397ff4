"""Helpers shared by the CLI modules: settings, running coroutines, one pool per command, argument types."""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import asyncpg
import click

from db.reveals import Accessor
from db.types import Conn
from ingest.settings import Settings

T = TypeVar("T")


def settings(*, webhook: bool = False) -> Settings:
    """The environment's settings for one command.

    Args:
        webhook: The command signs or verifies webhooks (``serve``, ``send``), so secrets are required.

    Raises:
        ConfigError: a bad value; :class:`ingest.cli.Main` prints it as one line and exits 2.
    """
    return Settings.from_env(webhook=webhook)


def time_option(_: object, param: click.Parameter, value: str | None) -> datetime | None:
    """A click callback: an ISO 8601 time with a zone (``--since``, ``--until``), or a one-line usage error."""
    from db.filters import InvalidFilter, parse_time

    if value is None:
        return None
    try:
        return parse_time(value, f"--{param.name}")
    except InvalidFilter as exc:
        raise click.BadParameter(str(exc)) from None


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion (connect failures are explained by :class:`ingest.cli.Main`)."""
    return asyncio.run(coro)  # type: ignore[arg-type]


async def with_conn(fn: Callable[[Conn], Awaitable[T]]) -> T:
    """Run ``fn`` on one service connection."""
    from db.pool import connect

    conn = await connect(settings().database_url)
    try:
        return await fn(conn)
    finally:
        await conn.close()


async def resolve(conn: Conn, table: str, text: str) -> uuid.UUID:
    """The id ``text`` names in ``table`` (a UUID or a unique prefix of 8+ hex digits; :mod:`db.ids`).

    Raises:
        click.ClickException: no such row, an ambiguous prefix, or not an id (one line, exit 1).
    """
    from db.ids import AmbiguousId, IdNotFound, InvalidId
    from db.ids import resolve as resolve_id

    try:
        return await resolve_id(conn, table, text)
    except (IdNotFound, AmbiguousId, InvalidId) as exc:
        raise click.ClickException(str(exc)) from None


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """A small service pool for one command (close it when done)."""
    from db.pool import create_pool

    return await create_pool(settings.database_url, min_size=1, max_size=4)


def operator() -> Accessor:
    """How an access from this command is recorded: the operating-system user and host (``user@host``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container: the uid still says who
        user = f"uid {os.getuid()}"
    who = f"{user}@{socket.gethostname()}"
    return Accessor(label=who, via="cli", client=who)
