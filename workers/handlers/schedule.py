"""Requested times: parsing in the org's time zone, date correction, business hours, free slots.

Date correction (seed 002, "date prevention"), stated precisely: language
models often emit a year that has passed ("2024-06-01" in 2026). When a
requested time lies in the past **and its year is earlier than the current
year** (in the org's time zone), it is moved to the next occurrence of the
same month, day and time that lies in the future: this year if still ahead,
else next year (29 February moves to the next leap year's). The reply says
so. A past time in the current year is not guessed at: earlier today, or an
earlier date this year, is ``INVALID_TIME`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from workers.hours import BusinessHours, invalid_time

#: Candidate starts for suggestions are this far apart, in minutes.
SLOT_STEP_MINUTES = 30
#: How far ahead suggestions look, in days.
SEARCH_HORIZON_DAYS = 14


@dataclass(frozen=True, slots=True)
class RequestedTime:
    """A resolved request: ``start`` is aware (org zone); ``corrected_from`` is the original if the year was moved."""

    start: datetime
    corrected_from: datetime | None = None


def parse_local(raw: str, tz: ZoneInfo) -> datetime:
    """Parse ISO 8601; a value without an offset is local time in ``tz``.

    Raises:
        ToolError: ``INVALID_TIME`` if it is not ISO 8601.
    """
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise invalid_time(f"{raw!r} is not an ISO 8601 date and time, like 2026-06-01T14:00") from None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed.astimezone(tz)


def _next_occurrence(value: datetime, now: datetime) -> datetime:
    for year in range(now.year, now.year + 9):
        try:
            candidate = value.replace(year=year)
        except ValueError:  # 29 February in a common year
            continue
        if candidate > now:
            return candidate
    raise invalid_time("that date does not recur")


def resolve(raw: str, tz: ZoneInfo, now: datetime) -> RequestedTime:
    """Apply the date-correction rule (module docstring) to a requested start.

    Args:
        now: The current time, aware.

    Raises:
        ToolError: ``INVALID_TIME`` for a past time that the rule does not correct.
    """
    start = parse_local(raw, tz)
    local_now = now.astimezone(tz)
    if start > local_now:
        return RequestedTime(start)
    if start.year < local_now.year:
        return RequestedTime(_next_occurrence(start, local_now), corrected_from=start)
    if start.date() == local_now.date():
        raise invalid_time(f"{start:%H:%M} today has already passed")
    raise invalid_time(f"{format_day(start)} is in the past")


def free_slots(
    *,
    after: datetime,
    duration_minutes: int,
    busy: list[tuple[datetime, datetime]],
    hours: BusinessHours,
    tz: ZoneInfo,
    limit: int,
    until: datetime | None = None,
) -> list[datetime]:
    """The first ``limit`` starts at or after ``after`` on the slot grid that fit in opening hours and hit no busy range.

    ``busy`` must be sorted by start. An org's active appointments never
    overlap (the exclusion constraint), so they are sorted by end too, and
    one forward pass over them suffices.
    """
    found: list[datetime] = []
    index = 0
    day = after.astimezone(tz).date()
    last_day = (until or after + timedelta(days=SEARCH_HORIZON_DAYS)).astimezone(tz).date()
    length = timedelta(minutes=duration_minutes)
    while day <= last_day and len(found) < limit:
        span = hours.span(day, tz)
        if span is not None:
            cursor = span[0]
            while cursor + length <= span[1] and len(found) < limit:
                end = cursor + length
                while index < len(busy) and busy[index][1] <= cursor:
                    index += 1
                clear = index == len(busy) or busy[index][0] >= end
                if clear and cursor >= after and (until is None or cursor < until):
                    found.append(cursor)
                cursor += timedelta(minutes=SLOT_STEP_MINUTES)
        day += timedelta(days=1)
    return found


def format_day(value: datetime) -> str:
    """``Tue 6 Jan 2026``."""
    return f"{value:%a} {value.day} {value:%b %Y}"


def format_long_day(value: datetime) -> str:
    """``Monday 1 June 2026``."""
    return f"{value:%A} {value.day} {value:%B %Y}"


def format_slots(slots: list[datetime], reference: datetime) -> str:
    """``14:30, 15:00 and 15:30``; a slot on another day than ``reference`` carries its day."""
    parts = [f"{s:%H:%M}" if s.date() == reference.date() else f"{format_day(s)} {s:%H:%M}" for s in slots]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
