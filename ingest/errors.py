"""The outer layer's errors, and the one way a failure below becomes an HTTP answer.

Every error ``ingest/`` defines is an :class:`IngestError`, as every error of
``workers/`` is a ``WorkerError`` and of ``db/`` a ``DatabaseError``. The
receiver, the admin API and the console answer a failure of PostgreSQL the
same way, with the same words (:func:`refusal_of`).
"""

from __future__ import annotations

from db.errors import UNAVAILABLE_ERRORS, RowRefused, is_data_error, refusal_reason
from db.filters import InvalidFilter

#: The reason given with every 503 for PostgreSQL being unreachable or restarting.
OUTAGE = "database unavailable, retry later"


class IngestError(Exception):
    """Root of the errors the outer layer (receiver, admin API, console, CLI, entry points) raises."""


class Refused(IngestError):
    """Stop handling a request and answer it with HTTP ``status`` and ``reason``: the admin API as
    ``{"error": reason}``, the console as text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refusal_of(exc: BaseException, *, what: str = "value") -> Refused | None:
    """The answer for a failure raised below the web layer, or None for one that is a bug (a 500).

    - PostgreSQL refused the data (SQLSTATE classes 22 and 54, :class:`db.errors.RowRefused`):
      400 ``"<what> cannot be stored: <first line of PostgreSQL's reason>"``;
    - a filter that cannot be read (:class:`db.filters.InvalidFilter`): 400 with its reason;
    - PostgreSQL unreachable or restarting (:data:`db.errors.UNAVAILABLE_ERRORS`): 503 :data:`OUTAGE`.

    A data error is checked before an outage, as :func:`db.errors.is_unavailable` does.
    """
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, RowRefused):
        return Refused(400, f"{what} cannot be stored: {exc}")
    if is_data_error(exc):
        return Refused(400, f"{what} cannot be stored: {refusal_reason(exc)}")
    if isinstance(exc, InvalidFilter):
        return Refused(400, str(exc))
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return Refused(503, OUTAGE)
    return None
