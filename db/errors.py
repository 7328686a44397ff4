"""Errors raised by the db package, and the one place asyncpg errors are classified.

Two classes matter to callers: "PostgreSQL is unavailable" (answer 503, try
again later; nothing is the request's fault) and "PostgreSQL refuses this
data" (SQLSTATE class 22 data exceptions and class 54 program limits, such
as a value jsonb cannot hold or an index entry over the btree limit; the
request is at fault, and only that request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

#: Errors that mean "PostgreSQL is unavailable" (answer 503, retry later), not a bug.
#: Shutdown and crash notices (57P01, 57P02) and asyncpg's internal state
#: errors arrive while a server restarts; they are outages too.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


class DatabaseError(Exception):
    """Base class for errors raised by the db package."""


class MigrationError(DatabaseError):
    """A migration file is misnamed or failed to apply; the message names it."""


class OrgNotFound(DatabaseError):
    """No organization has the given id."""


class AlreadyMapped(DatabaseError):
    """An assistant or phone number already routes to an organization; the message names it."""


class RowRefused(DatabaseError):
    """PostgreSQL refused one row's data; the message is a one-line reason safe to return."""


def is_data_error(exc: BaseException) -> bool:
    """True if ``exc`` is PostgreSQL (or asyncpg's encoder) refusing the data of a statement.

    SQLSTATE class 22 (data exception: invalid JSON text, an unencodable
    character, a numeric overflow) and class 54 (program limit exceeded: an
    index row over the btree maximum, nesting beyond the stack depth). asyncpg
    reports its own encoding failures as a ``DataError`` with SQLSTATE 22000.
    """
    state = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and isinstance(state, str) and state[:2] in ("22", "54")


def is_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` means PostgreSQL cannot be reached or is restarting (see :data:`UNAVAILABLE_ERRORS`)."""
    return isinstance(exc, UNAVAILABLE_ERRORS) and not is_data_error(exc)


def refusal_reason(exc: BaseException) -> str:
    """The first line of a data error's message (never the DETAIL, which may quote the data)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


#: Errors worth retrying at once, on the same connection, before an attempt counts as failed:
#: serialization failures and deadlocks. A lost connection is not retried in place: the delivery's
#: lease expires and the sweeper sends it again (as ``failed``, with the backoff of the next attempt).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


def is_transient(exc: BaseException) -> bool:
    """True for errors that a quick retry of the same transaction may cure."""
    return isinstance(exc, TRANSIENT_ERRORS)


def is_statement_timeout(exc: BaseException) -> bool:
    """True if PostgreSQL cancelled a statement (``statement_timeout``, SQLSTATE 57014)."""
    return isinstance(exc, asyncpg.QueryCanceledError)


#: The server refused the DATABASE_URL itself (who, which database, how): a setting to fix, not an outage.
_REFUSED_SETTINGS: tuple[type[BaseException], ...] = (
    asyncpg.ClientConfigurationError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)


def connect_problem(exc: BaseException) -> tuple[bool, str] | None:
    """Why connecting failed, as ``(the DATABASE_URL is wrong, one-line reason)``; None if not a connect failure.

    ``True`` means the server or the driver refused what the URL says (an unknown
    role or database, a wrong password, an unknown option); ``False`` means the
    server could not be reached. Reasons never include the URL (it may hold a password).
    """
    if isinstance(exc, _REFUSED_SETTINGS):
        reason = str(exc).removeprefix("invalid DSN: ")
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            reason += " (vapi-ingest migrate creates it)"
        return True, reason
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError)):
        return False, f"cannot reach PostgreSQL: {exc or type(exc).__name__}"
    return None


@contextmanager
def refusing_bad_rows() -> Iterator[None]:
    """Turn PostgreSQL refusing a statement's data (:func:`is_data_error`) into :class:`RowRefused`.

    Outages and every other error pass through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if not is_data_error(exc):
            raise
        raise RowRefused(refusal_reason(exc)) from exc
