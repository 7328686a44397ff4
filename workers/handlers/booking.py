"""The booking tools Vapi calls: bookClinicAppointment, checkAvailability, cancelAppointment, rescheduleAppointment.

Each returns the one line the assistant reads to the caller, or raises
:class:`ToolError`. Arguments are normalised here (phone, name, e-mail,
time); the decision itself is made by the SQL functions, under the org's
lock and the no-overlap exclusion constraint. Argument names are defined by
the tool definitions in ``deploy/vapi/tools/``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from db import appointments, orgs
from db.types import Conn, OrgId
from workers import metrics
from workers.errors import ToolError
from workers.handlers import contacts, schedule
from workers.hours import BusinessHours, invalid_time
from workers.messages import Envelope, ToolInvocation

#: Used when the caller gives no duration, in minutes.
DEFAULT_DURATION_MINUTES = 30
#: Alternatives offered when a slot is taken.
SUGGESTIONS = 3

Tool = Callable[[Conn, OrgId, ToolInvocation, Envelope], Awaitable[str]]


def _now() -> datetime:
    return datetime.now(UTC)


def _arg(invocation: ToolInvocation, name: str, *, required: bool = False) -> str | None:
    value = invocation.arguments.get(name)
    if _blank(value):
        if required:
            raise ToolError("INVALID_ARGUMENTS", f"INVALID_ARGUMENTS: {name} is required")
        return None
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ToolError("INVALID_ARGUMENTS", f"INVALID_ARGUMENTS: {name} must be text")
    return str(value).strip()


def _duration(invocation: ToolInvocation, name: str = "durationMinutes") -> int | None:
    raw = invocation.arguments.get(name)
    if raw is None or raw == "":
        return None
    try:
        minutes = int(raw)
    except (TypeError, ValueError):
        raise ToolError("INVALID_ARGUMENTS", f"INVALID_ARGUMENTS: {name} must be a whole number of minutes") from None
    if not 5 <= minutes <= 480:
        raise invalid_time(f"{name} must be between 5 and 480 minutes")
    return minutes


def _appointment_id(invocation: ToolInvocation) -> uuid.UUID:
    raw = _arg(invocation, "appointmentId", required=True)
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise ToolError("NOT_FOUND", f"NOT_FOUND: there is no appointment {raw}") from None


async def _org(conn: Conn, org_id: OrgId) -> tuple[orgs.Org, ZoneInfo, BusinessHours]:
    org = await orgs.get_org(conn, org_id)
    if org is None:
        raise ToolError("ORG_NOT_FOUND", "ORG_NOT_FOUND: this clinic is not set up")
    return org, ZoneInfo(org.timezone), BusinessHours(org.business_hours)


async def _suggest(
    conn: Conn,
    org_id: OrgId,
    after: datetime,
    duration: int,
    hours: BusinessHours,
    tz: ZoneInfo,
) -> list[datetime]:
    horizon = after + timedelta(days=schedule.SEARCH_HORIZON_DAYS)
    busy = await appointments.busy_ranges(conn, org_id, after, horizon)
    return schedule.free_slots(after=after, duration_minutes=duration, busy=busy, hours=hours, tz=tz, limit=SUGGESTIONS)


async def _taken(
    conn: Conn,
    org_id: OrgId,
    start: datetime,
    duration: int,
    hours: BusinessHours,
    tz: ZoneInfo,
) -> ToolError:
    slots = await _suggest(conn, org_id, start, duration, hours, tz)
    tail = f" The nearest free times are {schedule.format_slots(slots, start)}." if slots else ""
    return ToolError("SLOT_UNAVAILABLE", f"That time is taken.{tail}")


def _requested(
    invocation: ToolInvocation, name: str, tz: ZoneInfo, hours: BusinessHours, duration: int
) -> schedule.RequestedTime:
    """The requested start from argument ``name``, date-corrected and within opening hours."""
    requested = schedule.resolve(_arg(invocation, name, required=True) or "", tz, _now())
    hours.check(requested.start, duration, tz)
    return requested


async def _refusal(
    conn: Conn,
    org_id: OrgId,
    result: appointments.BookingResult,
    requested: schedule.RequestedTime,
    duration: int,
    hours: BusinessHours,
    tz: ZoneInfo,
) -> ToolError:
    """Why the SQL function said no: a taken slot comes with the nearest free times."""
    if result.get("error") == "SLOT_UNAVAILABLE":
        return await _taken(conn, org_id, requested.start, duration, hours, tz)
    return _refused(result)


def _refused(result: appointments.BookingResult) -> ToolError:
    code = str(result.get("error", "ERROR"))
    messages = {
        "INVALID_TIME": "INVALID_TIME: that time cannot be booked",
        "ORG_NOT_FOUND": "ORG_NOT_FOUND: this clinic is not set up",
        "NOT_FOUND": "NOT_FOUND: there is no such appointment",
    }
    return ToolError(code, messages.get(code, f"{code}: the booking could not be made"))


def _correction_note(requested: schedule.RequestedTime) -> str:
    if requested.corrected_from is None:
        return ""
    return (
        f" Note: {requested.corrected_from.year} has passed, so this is for "
        f"{schedule.format_long_day(requested.start)}."
    )


async def book_clinic_appointment(conn: Conn, org_id: OrgId, invocation: ToolInvocation, message: Envelope) -> str:
    """Book a slot: ``name``, ``phone`` (else the caller's number), ``email``, ``serviceType``, ``scheduledAt``, ``durationMinutes``.

    Returns:
        "Booked cleaning for Jane Doe on Tue 6 Jan 2026 at 14:00." then a note when the
        date was corrected, then the appointment id.

    Raises:
        ToolError: INVALID_ARGUMENTS, INVALID_PHONE, INVALID_EMAIL, INVALID_TIME, or
            SLOT_UNAVAILABLE with the nearest free times.
    """
    org, tz, hours = await _org(conn, org_id)
    raw_phone = _arg(invocation, "phone") or message.customer_number
    if raw_phone is None:
        raise ToolError("INVALID_PHONE", "INVALID_PHONE: a phone number is required")
    phone = contacts.normalise_phone(raw_phone, org.default_region)
    raw_name = _arg(invocation, "name")
    name = contacts.normalise_name(raw_name) if raw_name else None
    raw_email = _arg(invocation, "email")
    email = contacts.normalise_email(raw_email) if raw_email else None
    service = _arg(invocation, "serviceType") or "appointment"
    duration = _duration(invocation) or DEFAULT_DURATION_MINUTES
    requested = _requested(invocation, "scheduledAt", tz, hours, duration)
    result = await appointments.book(
        conn,
        org_id,
        name=name,
        email=email,
        phone=phone,
        service_type=service,
        scheduled_at=requested.start,
        duration_minutes=duration,
    )
    if result.get("success"):
        who = f" for {name}" if name else ""
        start = requested.start
        # The id lets the assistant cancel or move this booking later in the call.
        return (
            f"Booked {service}{who} on {schedule.format_day(start)} at {start:%H:%M}.{_correction_note(requested)}"
            f" Appointment id {result['appointment_id']}."
        )
    raise await _refusal(conn, org_id, result, requested, duration, hours, tz)


async def check_availability(conn: Conn, org_id: OrgId, invocation: ToolInvocation, message: Envelope) -> str:
    """Free times: ``scheduledAt`` checks one slot; ``date`` (YYYY-MM-DD) lists that day's free starts."""
    _, tz, hours = await _org(conn, org_id)
    duration = _duration(invocation) or DEFAULT_DURATION_MINUTES
    if _arg(invocation, "scheduledAt"):
        requested = _requested(invocation, "scheduledAt", tz, hours, duration)
        result = await appointments.check(conn, org_id, requested.start, duration)
        if result.get("available"):
            return f"{schedule.format_day(requested.start)} at {requested.start:%H:%M} is free.{_correction_note(requested)}"
        raise await _taken(conn, org_id, requested.start, duration, hours, tz)
    day_text = _arg(invocation, "date", required=True) or ""
    requested = schedule.resolve(day_text[:10] + "T23:59", tz, _now())
    span = hours.span(requested.start.date(), tz)
    day = schedule.format_day(requested.start)
    if span is None:
        return f"We are closed on {day} ({hours.describe()})."
    start = max(span[0], _now().astimezone(tz))
    busy = await appointments.busy_ranges(conn, org_id, span[0], span[1])
    slots = schedule.free_slots(
        after=start, duration_minutes=duration, busy=busy, hours=hours, tz=tz, limit=48, until=span[1]
    )
    if not slots:
        later = await _suggest(conn, org_id, span[1], duration, hours, tz)
        nxt = f" The next free time is {schedule.format_day(later[0])} at {later[0]:%H:%M}." if later else ""
        return f"There are no free times on {day}.{nxt}"
    return f"Free times on {day}: {schedule.format_slots(slots, requested.start)}.{_correction_note(requested)}"


async def cancel_appointment(conn: Conn, org_id: OrgId, invocation: ToolInvocation, message: Envelope) -> str:
    """Cancel ``appointmentId`` (a soft delete with an audit row); the slot is free again."""
    appointment_id = _appointment_id(invocation)
    result = await appointments.cancel(conn, org_id, appointment_id, _arg(invocation, "reason"))
    if not result.get("success"):
        raise _refused(result)
    return "The appointment is cancelled."


async def reschedule_appointment(conn: Conn, org_id: OrgId, invocation: ToolInvocation, message: Envelope) -> str:
    """Move ``appointmentId`` to ``newScheduledAt`` (optionally ``durationMinutes``); a taken slot changes nothing."""
    _, tz, hours = await _org(conn, org_id)
    appointment_id = _appointment_id(invocation)
    existing = await appointments.get(conn, appointment_id)
    if existing is None or existing.deleted_at is not None:
        raise ToolError("NOT_FOUND", "NOT_FOUND: there is no such appointment")
    duration = _duration(invocation) or existing.duration_minutes
    requested = _requested(invocation, "newScheduledAt", tz, hours, duration)
    result = await appointments.reschedule(conn, org_id, appointment_id, requested.start, duration)
    if result.get("success"):
        start = requested.start
        return (
            f"Moved to {schedule.format_day(start)} at {start:%H:%M}. "
            f"New appointment id {result['appointment_id']}.{_correction_note(requested)}"
        )
    raise await _refusal(conn, org_id, result, requested, duration, hours, tz)


_OUTCOME_OF_SUCCESS = {
    "bookClinicAppointment": "booked",
    "rescheduleAppointment": "booked",
    "cancelAppointment": "cancelled",
    "checkAvailability": "checked",
}
_OUTCOME_OF_CODE = {"SLOT_UNAVAILABLE": "slot_unavailable", "NOT_FOUND": "not_found"}


#: Arguments each tool cannot run without: what ``required`` says in its published definition
#: (``deploy/vapi/tools/<name>.json``, which a clinic gives Vapi; a test keeps the two equal). Vapi's model
#: may still call without them, so the tool checks before it acts.
REQUIRED_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "bookClinicAppointment": ("name", "serviceType", "scheduledAt"),
    "cancelAppointment": ("appointmentId",),
    "checkAvailability": (),
    "rescheduleAppointment": ("appointmentId", "newScheduledAt"),
}


def check_required(name: str, invocation: ToolInvocation) -> None:
    """Refuse a call that lacks any argument its definition requires, naming every missing one, so the
    assistant can ask the caller for all of them at once.

    Raises:
        ToolError: INVALID_ARGUMENTS, e.g. "INVALID_ARGUMENTS: name and serviceType are required".
    """
    missing = [arg for arg in REQUIRED_ARGUMENTS[name] if _blank(invocation.arguments.get(arg))]
    if missing:
        names = f"{', '.join(missing[:-1])} and {missing[-1]}" if len(missing) > 1 else missing[0]
        raise ToolError(
            "INVALID_ARGUMENTS", f"INVALID_ARGUMENTS: {names} {'is' if len(missing) == 1 else 'are'} required"
        )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _measured(name: str, tool: Tool) -> Tool:
    """Check the required arguments (:func:`check_required`), then run; count outcomes in
    ``vapi_booking_attempts_total`` and time calls in ``vapi_booking_duration_seconds``."""

    async def run(conn: Conn, org_id: OrgId, invocation: ToolInvocation, message: Envelope) -> str:
        started = time.perf_counter()
        outcome = "error"
        try:
            check_required(name, invocation)
            reply = await tool(conn, org_id, invocation, message)
            outcome = _OUTCOME_OF_SUCCESS[name]
            return reply
        except ToolError as exc:
            outcome = _OUTCOME_OF_CODE.get(exc.code, "invalid")
            raise
        finally:
            metrics.BOOKING_ATTEMPTS.labels(name, outcome).inc()
            metrics.BOOKING_DURATION.labels(name).observe(time.perf_counter() - started)

    return run


#: The booking tools by the name Vapi sends.
BOOKING_TOOLS: dict[str, Tool] = {
    name: _measured(name, fn)
    for name, fn in {
        "bookClinicAppointment": book_clinic_appointment,
        "checkAvailability": check_availability,
        "cancelAppointment": cancel_appointment,
        "rescheduleAppointment": reschedule_appointment,
    }.items()
}
