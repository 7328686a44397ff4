"""A clinic's opening hours: the one reading of ``organizations.business_hours``.

Side-effect free (no metrics, no I/O), so the CLI, the console and the admin API
use it before ``serve`` forks its web processes, as the booking tools do.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from workers.errors import ToolError

#: Keys of ``business_hours``, Monday first (``date.weekday()`` order).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def invalid_time(reason: str) -> ToolError:
    """An ``INVALID_TIME`` refusal with its reason."""
    return ToolError("INVALID_TIME", f"INVALID_TIME: {reason}")


def validated(value: Any) -> dict[str, list[str]]:
    """Opening hours as stored: ``{"mon": ["09:00", "17:00"], ...}`` in weekday order; a missing day is closed.

    Raises:
        ValueError: not an object, a key that is not ``mon``..``sun``, a time that is not HH:MM, or closing not
            after opening.
    """
    if not isinstance(value, dict):
        raise ValueError('business_hours must be an object like {"mon": ["09:00", "17:00"]}')
    checked: dict[str, list[str]] = {}
    for day, span in value.items():
        if day not in WEEKDAYS:
            raise ValueError(f"{day!r} is not a weekday ({', '.join(WEEKDAYS)})")
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(t, str) for t in span)):
            raise ValueError(f'{day}: hours must be ["HH:MM", "HH:MM"]')
        opens, closes = (_time(day, t) for t in span)
        if closes <= opens:
            raise ValueError(f"{day}: closing {span[1]} is not after opening {span[0]}")
        checked[day] = [f"{opens:%H:%M}", f"{closes:%H:%M}"]
    return {day: checked[day] for day in WEEKDAYS if day in checked}


def _time(day: str, text: str) -> time:
    try:
        if len(text) != 5:
            raise ValueError
        return time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{day}: {text!r} is not a time HH:MM") from None


class BusinessHours:
    """Opening hours per weekday from ``organizations.business_hours`` (``{"mon": ["09:00", "17:00"]}``).

    Stored hours were validated on the way in (:func:`validated`); an entry that is not (written by hand in
    SQL) is ignored here, so a booking is refused as outside the hours rather than failing.
    """

    def __init__(self, spec: dict[str, list[str]]) -> None:
        self.hours: dict[int, tuple[time, time]] = {}
        for day, span in spec.items():
            if day in WEEKDAYS and isinstance(span, list) and len(span) == 2:
                self.hours[WEEKDAYS.index(day)] = (time.fromisoformat(span[0]), time.fromisoformat(span[1]))

    def span(self, day: date, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
        """Opening and closing time on ``day`` (aware), or ``None`` if closed."""
        hours = self.hours.get(day.weekday())
        if hours is None:
            return None
        return datetime.combine(day, hours[0], tz), datetime.combine(day, hours[1], tz)

    def check(self, start: datetime, duration_minutes: int, tz: ZoneInfo) -> None:
        """Raise ``INVALID_TIME`` unless ``[start, start + duration)`` lies within one day's hours."""
        span = self.span(start.date(), tz)
        if span is None:
            raise invalid_time(f"we are closed on {start:%A}s ({self.describe()})")
        end = start + timedelta(minutes=duration_minutes)
        if start < span[0] or end > span[1]:
            raise invalid_time(f"{start:%H:%M}-{end:%H:%M} is outside our hours on {start:%A} ({self.describe()})")

    def describe(self) -> str:
        """E.g. ``Mon-Fri 09:00-17:00`` for the usual week, else one entry per open day."""
        spans = {d: f"{o:%H:%M}-{c:%H:%M}" for d, (o, c) in sorted(self.hours.items())}
        if sorted(spans) == [0, 1, 2, 3, 4] and len(set(spans.values())) == 1:
            return f"Mon-Fri {spans[0]}"
        return ", ".join(f"{WEEKDAYS[d].title()} {s}" for d, s in spans.items()) or "closed"
