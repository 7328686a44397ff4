"""How the console's templates write values: JSON as a person reads it, times with their zone."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def pretty_json(value: Any, indent: int | None = None) -> str:
    """JSON as a person reads it: ``What's`` and ``café`` as written, not ``What\\u0027s`` (Jinja's
    ``tojson`` escapes for a script block). The page's autoescaping still escapes it for HTML."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def day_in(value: datetime, zone: str) -> date:
    """The calendar day of ``value`` in ``zone`` (an IANA name; UTC if unknown): the day a clinic's
    calendar shows it on, which is not the UTC day near midnight."""
    return value.astimezone(_zone(zone)).date()


def at(value: datetime | str | None, zone: str = "UTC", *, seconds: bool = False) -> str:
    """A moment in ``zone`` (an IANA name, UTC by default) with the zone's abbreviation, never a bare
    clock time: ``2026-12-07 09:15 PST``; ``-`` for None.

    ``value`` may be an ISO 8601 string (the ``at`` of an error in a delivery's history); a naive time
    is taken as UTC, as PostgreSQL's ``timestamptz`` would give it. An unknown zone falls back to UTC.
    """
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(_zone(zone)).strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
