"""Which deliveries an operator means: a filter composed into fixed SQL with bound parameters.

No request value ever becomes SQL text; the fragments are fixed, only ``$n`` values vary.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from db.statuses import STATUSES
from db.tenancy import IN_VISIBLE_ORGS


class InvalidFilter(ValueError):
    """A filter value is malformed; the message names it (for a 400 or a CLI error)."""


@dataclass(frozen=True, kw_only=True)
class DeliveryFilter:
    """Which deliveries an operator means.

    Attributes:
        statuses: Any of these statuses (all when empty).
        error: A substring of the last error, case-insensitive (matched literally).
        ids: Exactly these deliveries (other filters still apply).
        not_replayed_since: Only deliveries not replayed at or after this time (a resumed replay
            never replays twice what it already replayed, even if it failed again).
        vapi_call_id: Only deliveries of this Vapi call (``call.id``).
        older_than: Only deliveries after this ``(received_at, id)`` in newest-first order: the last row
            of the previous page (keyset pagination).
    """

    statuses: tuple[str, ...] = ()
    org_id: uuid.UUID | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = None
    ids: tuple[uuid.UUID, ...] = field(default=())
    not_replayed_since: datetime | None = None
    vapi_call_id: str | None = None
    older_than: tuple[datetime, uuid.UUID] | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.statuses if s not in STATUSES]
        if bad:
            raise InvalidFilter(f"status must be one of {', '.join(STATUSES)}, got {bad[0]!r}")
        if self.since and self.until and self.since > self.until:
            raise InvalidFilter("since must not be after until")
        for name in ("event_type", "error", "vapi_call_id"):
            value = getattr(self, name)
            if value is not None and "\x00" in value:
                raise InvalidFilter(f"{name} must not contain NUL characters")
            if value is not None and not _encodable(value):
                raise InvalidFilter(f"{name} must be valid Unicode text (it has an unpaired surrogate)")

    def where(self, first_param: int = 1) -> tuple[str, list[Any]]:
        """``(sql, params)``: a WHERE clause over ``webhook_delivery_log d`` with ``$n`` from ``first_param``."""
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, *values: Any) -> None:
            for value in values:
                params.append(value)
                sql = sql.replace("?", f"${first_param + len(params) - 1}", 1)
            clauses.append(sql)

        clauses.append(IN_VISIBLE_ORGS)
        if self.statuses:
            add("d.status = ANY(?::text[])", list(self.statuses))
        if self.org_id:
            add("d.org_id = ?", self.org_id)
        if self.event_type:
            add("d.event_type = ?", self.event_type)
        if self.since:
            add("d.received_at >= ?", self.since)
        if self.until:
            add("d.received_at < ?", self.until)
        if self.error:
            escaped = self.error.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            add("d.error_message ILIKE ?", f"%{escaped}%")
        if self.ids:
            add("d.id = ANY(?::uuid[])", list(self.ids))
        if self.not_replayed_since:
            add("(d.replayed_at IS NULL OR d.replayed_at < ?)", self.not_replayed_since)
        if self.vapi_call_id:
            add("d.vapi_call_id = ?", self.vapi_call_id)
        if self.older_than:
            # The plain bound lets an index on received_at serve the range; the pair breaks ties.
            add("d.received_at <= ? AND (d.received_at, d.id) < (?, ?)", self.older_than[0], *self.older_than)
        return " AND ".join(clauses), params


def parse_time(value: str, name: str) -> datetime:
    """An ISO-8601 time with a zone.

    Raises:
        InvalidFilter: naming ``name``.
    """
    if len(value) > 64 or not _encodable(value):
        raise InvalidFilter(f"{name} must be an ISO-8601 time, got {value[:64]!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"{name} must be an ISO-8601 time, got {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidFilter(f"{name} must include a time zone (e.g. Z), got {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidFilter(f"{name} is outside the calendar once moved to UTC, got {value!r}") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
