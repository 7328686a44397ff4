"""Console appointments: one clinic's week as a calendar grid, in the clinic's own time zone."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from db import appointments, orgs, reveals
from ingest.callers import accessor, caller, session
from ingest.console.render import render
from workers.hours import WEEKDAYS, BusinessHours

#: Hours shown when the week has neither opening hours nor appointments.
DEFAULT_HOURS = range(8, 18)
#: The years a calendar week may be in.
YEARS = (1900, 2999)


async def week(request: web.Request) -> web.Response:
    """``?org=<id>`` (the admin's choice; an org session always sees its own), ``?week=YYYY-MM-DD`` (any day
    of it; default this week), ``?cancelled=1`` to show cancelled appointments struck through.

    Raises:
        web.HTTPBadRequest: ``org`` is not an id or ``week`` not a date.
    """
    who = caller(request)
    async with session(request) as conn:
        clinics = await orgs.list_orgs(conn) if who.org_id is None else []
        org_id = who.org_id or _org_choice(request, clinics)
        org = await orgs.get_org(conn, org_id) if org_id else None
        if org is None:
            return await render(request, "not_found.html", {"what": "clinic"}, status=404)
        tz = ZoneInfo(org.timezone)
        monday = _monday(request, tz)
        start = datetime.combine(monday, time(0), tz)
        end = datetime.combine(monday + timedelta(days=7), time(0), tz)
        cancelled = request.query.get("cancelled") == "1"
        rows = await appointments.in_range(conn, org.id, start, end, cancelled=cancelled)
        if rows:  # patients' names and numbers
            await reveals.record_listing(conn, accessor(request, who, "console"), [org.id], "appointment calendar")
    days = [monday + timedelta(days=i) for i in range(7)]
    opening = {i: org.business_hours.get(WEEKDAYS[i]) for i in range(7)}
    open_cells = _open_cells(BusinessHours(org.business_hours))
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        local_start, local_end = row["scheduled_at"].astimezone(tz), row["ends_at"].astimezone(tz)
        row.update(start=local_start, end=local_end)
        cells.setdefault((local_start.weekday(), local_start.hour), []).append(row)
    context = {
        "org": org,
        "clinics": clinics,
        "days": days,
        "opening": opening,
        "open_cells": open_cells,
        "hours": _hours(open_cells, cells),
        "cells": cells,
        "cancelled": cancelled,
        "count": len(rows),
        "previous": monday - timedelta(days=7),
        "next": monday + timedelta(days=7),
    }
    return await render(request, "appointments.html", context)


def _org_choice(request: web.Request, clinics: list[orgs.OrgRow]) -> uuid.UUID | None:
    chosen = request.query.get("org")
    if not chosen:
        return clinics[0]["id"] if clinics else None
    try:
        return uuid.UUID(chosen)
    except ValueError:
        raise web.HTTPBadRequest(text="org must be a clinic's id") from None


def _monday(request: web.Request, tz: ZoneInfo) -> date:
    raw = request.query.get("week")
    try:
        day = date.fromisoformat(raw) if raw else datetime.now(tz).date()
        if not YEARS[0] <= day.year <= YEARS[1]:
            raise ValueError
    except ValueError:
        # The bound keeps the previous and next weeks inside what datetime can hold.
        raise web.HTTPBadRequest(text=f"week must be a date, YYYY-MM-DD, in {YEARS[0]}-{YEARS[1]}") from None
    return day - timedelta(days=day.weekday())


def _open_cells(hours: BusinessHours) -> set[tuple[int, int]]:
    """``(weekday, hour)`` of every hour the clinic is open for at least part of."""
    cells: set[tuple[int, int]] = set()
    for day, (first, last) in hours.hours.items():
        cells.update((day, hour) for hour in range(first.hour, last.hour + (1 if last.minute else 0)))
    return cells


def _hours(open_cells: set[tuple[int, int]], cells: dict[tuple[int, int], list[dict[str, Any]]]) -> list[int]:
    """The rows of the grid: every hour the clinic is open on some day, and every hour with an appointment."""
    hours = {hour for _, hour in cells} | {hour for _, hour in open_cells}
    return sorted(hours) if hours else list(DEFAULT_HOURS)
