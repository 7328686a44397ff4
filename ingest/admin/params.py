"""Parsing the admin API's query parameters and replay bodies; every bad value is a 400 naming it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from db.filters import DeliveryFilter, parse_time
from db.statuses import REPLAYABLE
from ingest.errors import Refused

RANGE_PATTERN = re.compile(r"^(\d{1,4})([mhd])$")
RANGE_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
#: The longest ``range`` accepted.
MAX_RANGE = timedelta(days=90)


def since(request: web.Request) -> datetime:
    """The start of the ``range`` query parameter (``30m``, ``24h``, ``7d``; default 24h, at most 90 days)."""
    raw = request.query.get("range", "24h")
    match = RANGE_PATTERN.match(raw)
    if not match:
        raise Refused(400, f"range must look like 30m, 24h or 7d, got {raw!r}")
    span = timedelta(**{RANGE_UNITS[match.group(2)]: int(match.group(1))})
    if not timedelta(0) < span <= MAX_RANGE:
        raise Refused(400, f"range must be between 1m and {MAX_RANGE.days}d")
    return datetime.now(UTC) - span


def integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name`` within ``[low, high]``."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Refused(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise Refused(400, f"{name} must be between {low} and {high}")
    return value


def uuid_value(raw: Any, name: str) -> uuid.UUID:
    """``raw`` as a UUID; ``name`` is what the 400 calls it."""
    if not isinstance(raw, str):
        raise Refused(400, f"{name} must be a UUID string")
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Refused(400, f"{name} must be a UUID, got {raw[:64]!r}") from None


def replay_filter(body: dict[str, Any]) -> DeliveryFilter:
    """The :class:`DeliveryFilter` a replay body describes (``status`` and/or ``ids`` required)."""
    status = body.get("status")
    if status is None:
        statuses: tuple[Any, ...] = ()
    elif isinstance(status, str):
        statuses = (status,)
    elif isinstance(status, list):
        statuses = tuple(status)
    else:
        raise Refused(400, "status must be a string or a list of strings")
    if not all(isinstance(s, str) for s in statuses):
        raise Refused(400, "status must be a string or a list of strings")
    if any(s not in REPLAYABLE for s in statuses):
        raise Refused(400, "status must be failed or dead_letter (only those are replayed)")
    ids = body.get("ids") or []
    if not isinstance(ids, list):
        raise Refused(400, "ids must be a list of UUIDs")
    if not statuses and not ids:
        raise Refused(400, "give status or ids")
    for name in ("type", "error", "since", "until"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise Refused(400, f"{name} must be a string")
    return DeliveryFilter(
        statuses=statuses,
        org_id=uuid_value(body["org_id"], "org_id") if body.get("org_id") else None,
        event_type=body.get("type"),
        since=parse_time(body["since"], "since") if body.get("since") else None,
        until=parse_time(body["until"], "until") if body.get("until") else None,
        error=body.get("error"),
        ids=tuple(uuid_value(i, "ids[]") for i in ids),
    )
