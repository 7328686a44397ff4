"""Start-up checks: what a process needs (settings, ports, PostgreSQL, Redis), each problem as one line.

A problem is :class:`~ingest.settings.ConfigError` when a setting is wrong
(exit 2) or :class:`Unavailable` when something it names cannot be had right
now (exit 1); :class:`ingest.cli.Main` prints either as one line. The
messages name the variable and never include a URL (it may hold a password).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass

from db.errors import connect_problem
from ingest.errors import IngestError
from ingest.settings import ConfigError, Settings
from workers.broker import ping, redis_problem

#: Seconds a start-up check waits for PostgreSQL or Redis.
CHECK_TIMEOUT_S = 3.0


class Unavailable(IngestError):
    """A service or port the command needs is not available (exit 1); the message names the variable."""


def explain(exc: BaseException) -> ConfigError | Unavailable | None:
    """The one-line problem behind a PostgreSQL or Redis connect failure, or None for any other error."""
    for variable, classify in (("DATABASE_URL", connect_problem), ("REDIS_URL", redis_problem)):
        found = classify(exc)
        if found is not None:
            bad_setting, reason = found
            return (ConfigError if bad_setting else Unavailable)(f"{variable}: {reason}")
    return None


def check_port(variable: str, port: int) -> None:
    """Make sure nothing listens on ``port`` yet.

    Raises:
        Unavailable: ``"PORT 8000 is in use"``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers bind: SO_REUSEADDR, so a port in TIME_WAIT is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Unavailable(f"{variable} {port} is in use") from None
            raise Unavailable(f"{variable} {port}: {exc.strerror}") from None


@dataclass(frozen=True)
class Reachability:
    """What the start-up check found: ``None`` where a service answered, else why not (one line)."""

    database: str | None
    redis: str | None
    #: VAPI_DEFAULT_ORG_ID is set but names no organization (messages would be quarantined).
    default_org_missing: bool = False

    def fields(self) -> dict[str, str]:
        """For the start-up log line: ``{"database": "reachable" | reason, "redis": ...}``."""
        return {"database": self.database or "reachable", "redis": self.redis or "reachable"}


async def check_services(settings: Settings) -> Reachability:
    """Connect to PostgreSQL and Redis once each.

    Raises:
        ConfigError: a server refused what a URL says (unknown role, database or password).
    """
    from db import orgs
    from db.pool import connect

    database: str | None = None
    default_org_missing = False
    try:
        conn = await asyncio.wait_for(connect(settings.database_url), CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - classified below; anything unknown is re-raised
        database = _unreachable_reason(exc)
    else:
        try:
            if settings.default_org_id is not None:
                default_org_missing = await orgs.get_org(conn, settings.default_org_id) is None
        finally:
            await conn.close()
    try:
        await asyncio.to_thread(ping, settings.redis_url)
        redis_reason = None
    except Exception as exc:  # noqa: BLE001 - classified below; anything unknown is re-raised
        redis_reason = _unreachable_reason(exc)
    return Reachability(database, redis_reason, default_org_missing)


def _unreachable_reason(exc: Exception) -> str:
    problem = explain(exc)
    if problem is None:
        raise exc
    if isinstance(problem, ConfigError):
        raise problem from None
    return str(problem).split(": ", 1)[1]
