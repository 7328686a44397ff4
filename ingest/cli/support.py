"""Helpers shared by the CLI modules: settings, running coroutines, one pool per command, argument types."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import click

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


def uuid_option(_: Any, __: Any, value: str | None) -> uuid.UUID | None:
    """A click callback: the value as a UUID, or a usage error naming it."""
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a UUID") from None


def uuid_arguments(_: Any, __: Any, values: tuple[str, ...]) -> tuple[uuid.UUID, ...]:
    """A click callback for variadic UUID arguments."""
    return tuple(uuid_option(None, None, v) for v in values)  # type: ignore[misc]


async def open_pool(settings: Settings) -> asyncpg.Pool:
    """A small service pool for one command (close it when done)."""
    from db.pool import create_pool

    return await create_pool(settings.database_url, min_size=1, max_size=4)
