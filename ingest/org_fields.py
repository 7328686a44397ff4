"""Validation of an organization's settings, shared by the CLI and the admin API.

Each function returns the stored form or raises ``ValueError`` with a
one-line reason that names the value.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HOURS = re.compile(r"^(?P<day>[a-z]{3})=(?P<open>\d\d:\d\d)-(?P<close>\d\d:\d\d)$")


def timezone(value: str) -> str:
    """An IANA time zone name, e.g. ``Europe/London``."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone") from None
    return value


def region(value: str) -> str:
    """An ISO 3166 alpha-2 region, upper-cased."""
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ValueError(f"{value!r} is not a 2-letter region code")
    return value.upper()


def name(value: str) -> str:
    """A display name: not blank, at most 200 characters."""
    if not value.strip() or len(value) > 200:
        raise ValueError("name must be 1 to 200 characters")
    return value.strip()


def business_hours(value: Any) -> dict[str, list[str]]:
    """Opening hours as stored: ``{"mon": ["09:00", "17:00"], ...}``; a missing day is closed.

    Raises:
        ValueError: a key that is not ``mon``..``sun``, a time that is not HH:MM, or closing not after opening.
    """
    from workers.handlers.schedule import WEEKDAYS  # here: the handlers package imports metrics, which must
    # not load before `serve` forks its web processes (ingest.prefork)

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


def hours_changes(
    current: dict[str, list[str]], opening: tuple[str, ...], closed: tuple[str, ...]
) -> dict[str, list[str]]:
    """``current`` with days set by ``mon=09:00-17:00`` items and days removed by name (the CLI's form).

    Raises:
        ValueError: a malformed item, as :func:`business_hours`.
    """
    from workers.handlers.schedule import WEEKDAYS

    hours = dict(current)
    for item in opening:
        match = _HOURS.match(item.strip().lower())
        if not match:
            raise ValueError(f"{item!r} is not DAY=HH:MM-HH:MM (e.g. mon=09:00-17:00)")
        hours[match["day"]] = [match["open"], match["close"]]
    for day in closed:
        if day.lower() not in WEEKDAYS:
            raise ValueError(f"{day!r} is not a weekday ({', '.join(WEEKDAYS)})")
        hours.pop(day.lower(), None)
    return business_hours(hours)


def _time(day: str, text: str) -> time:
    try:
        if len(text) != 5:
            raise ValueError
        return time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{day}: {text!r} is not a time HH:MM") from None
