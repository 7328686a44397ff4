"""Validation of an organization's settings, shared by the CLI and the admin API.

Each function returns the stored form or raises ``ValueError`` with a
one-line reason that names the value.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workers.hours import WEEKDAYS, validated

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


#: Opening hours as stored, or ``ValueError`` naming what is wrong (:func:`workers.hours.validated`).
business_hours = validated


def hours_changes(
    current: dict[str, list[str]], opening: tuple[str, ...], closed: tuple[str, ...]
) -> dict[str, list[str]]:
    """``current`` with days set by ``mon=09:00-17:00`` items and days removed by name (the CLI's form).

    Raises:
        ValueError: a malformed item, as :func:`workers.hours.validated`.
    """
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
    return validated(hours)
