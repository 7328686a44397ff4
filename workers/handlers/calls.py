"""Apply call-lifecycle messages to ``calls`` through the seeds' atomic SQL functions.

Each handler runs inside the transaction that also marks the delivery
completed, so its effect happens exactly once per delivery. End-of-call data
comes from the report itself, never from ``message.call``, which is a stale
snapshot taken when the call was created (FINDINGS.md §2).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from db import calls
from db.types import Conn
from workers.errors import PermanentError
from workers.parsing import parse_timestamp

Result = dict[str, Any]


def _call(message: dict[str, Any]) -> dict[str, Any]:
    call = message.get("call")
    if call is None:
        return {}
    if not isinstance(call, dict):
        raise PermanentError("message.call is not an object")
    return call


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PermanentError(f"{key} is not a string")
    return value


def _nested(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _number(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PermanentError(f"{name} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PermanentError(f"{name} is not a number") from None
    if not number.is_finite():
        raise PermanentError(f"{name} is not a finite number")
    return number


def _time(value: Any, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise PermanentError(f"{name} is not an ISO-8601 time or epoch milliseconds")
    return parsed


def _call_facts(call: dict[str, Any]) -> calls.CallFacts:
    """type, customer number, assistant id, phone number id from ``message.call``."""
    customer = call.get("customer")
    number = customer.get("number") if isinstance(customer, dict) else None
    return calls.CallFacts(
        type=_text(call, "type"),
        customer_number=number if isinstance(number, str) and number else None,
        assistant_id=_text(call, "assistantId"),
        phone_number_id=_text(call, "phoneNumberId"),
    )


def _no_call_id(message_type: str) -> Result:
    # Vapi's docs examples send "call": {}; there is no call to update, and
    # retrying cannot change that, so the delivery completes with this note.
    return {"applied": False, "reason": f"{message_type} without call.id: no call to update"}


async def handle_status_update(conn: Conn, org_id: uuid.UUID, message: dict[str, Any]) -> Result:
    """Create the call or move its status forward (``create_inbound_call_atomically``).

    Raises:
        PermanentError: ``status`` missing or not a string, or ``call`` malformed.
    """
    call = _call(message)
    status = _text(message, "status")
    if status is None:
        raise PermanentError("status-update without status")
    call_id = _text(call, "id")
    if call_id is None:
        return _no_call_id("status-update")
    row_id = await calls.record_status(
        conn,
        org_id,
        call_id,
        status,
        _call_facts(call),
        ended_reason=_text(message, "endedReason"),
        at=parse_timestamp(message.get("timestamp")),
    )
    return {"applied": True, "call_id": str(row_id), "status": status}


def recording_urls(message: dict[str, Any]) -> tuple[str | None, str | None]:
    """Mono and stereo recording URLs: ``artifact`` first, then the legacy top-level fields."""
    mono = (
        _nested(message, "artifact", "recordingUrl")
        or _nested(message, "artifact", "recording", "mono", "combinedUrl")
        or message.get("recordingUrl")
    )
    stereo = (
        _nested(message, "artifact", "stereoRecordingUrl")
        or _nested(message, "artifact", "recording", "stereoUrl")
        or message.get("stereoRecordingUrl")
    )
    return (mono if isinstance(mono, str) and mono else None, stereo if isinstance(stereo, str) and stereo else None)


async def handle_end_of_call_report(conn: Conn, org_id: uuid.UUID, message: dict[str, Any]) -> Result:
    """Record how the call ended (``update_call_completed_atomically``) and queue its recording once.

    Duration is ``durationSeconds`` when present, else computed from
    ``startedAt``/``endedAt`` (FINDINGS.md §2).

    Raises:
        PermanentError: a present field has the wrong type.
    """
    call = _call(message)
    call_id = _text(call, "id")
    if call_id is None:
        return _no_call_id("end-of-call-report")
    transcript = _nested(message, "artifact", "transcript") or message.get("transcript")
    summary = _nested(message, "analysis", "summary") or message.get("summary")
    end = calls.CallEnd(
        ended_reason=_text(message, "endedReason"),
        started_at=_time(message.get("startedAt"), "startedAt"),
        ended_at=_time(message.get("endedAt"), "endedAt"),
        cost_usd=_number(message.get("cost"), "cost"),
        duration_s=_number(message.get("durationSeconds"), "durationSeconds"),
        transcript=transcript if isinstance(transcript, str) else None,
        summary=summary if isinstance(summary, str) else None,
    )
    row_id = await calls.record_end(conn, org_id, call_id, end, _call_facts(call))
    mono, stereo = recording_urls(message)
    queued = False
    recording = mono or stereo
    if recording:
        queued = await calls.queue_recording(conn, org_id, call_id, recording, stereo)
    return {"applied": True, "call_id": str(row_id), "recording_queued": bool(queued)}


async def handle_hang(conn: Conn, org_id: uuid.UUID, message: dict[str, Any]) -> Result:
    """Count a stall of the assistant on the call (``record_call_hang``)."""
    call_id = _text(_call(message), "id")
    if call_id is None:
        return _no_call_id("hang")
    count = await calls.record_hang(conn, org_id, call_id)
    return {"applied": True, "hang_count": count}
