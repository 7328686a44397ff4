"""Apply call-lifecycle messages to ``calls`` through the seeds' atomic SQL functions, a batch at a time.

Each handler takes the claims of one message type and runs inside the
transaction that also marks them completed, so its effect happens exactly
once per delivery. End-of-call data
comes from the report itself, never from ``message.call``, which is a stale
snapshot taken when the call was created (FINDINGS.md §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from db import calls
from db.deliveries import Claim
from db.types import Conn
from workers.errors import PermanentError
from workers.parsing import parse_timestamp, stored

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


def _call_facts(claim: Claim, call: dict[str, Any]) -> calls.CallFacts:
    """type, assistant id, phone number id from ``message.call``; the caller's number as the message model
    reads it (:attr:`workers.messages.Envelope.customer_number`)."""
    return calls.CallFacts(
        type=_text(call, "type"),
        customer_number=stored(claim.payload, claim.event_type).customer_number,
        assistant_id=_text(call, "assistantId"),
        phone_number_id=_text(call, "phoneNumberId"),
    )


def _no_call_id(message_type: str) -> Result:
    # Vapi's docs examples send "call": {}; there is no call to update, and
    # retrying cannot change that, so the delivery completes with this note.
    return {"applied": False, "reason": f"{message_type} without call.id: no call to update"}


async def handle_status_updates(conn: Conn, claims: Sequence[Claim]) -> list[Result]:
    """Create each call or move its status forward (``create_inbound_call_atomically``), one statement for all.

    Returns:
        One result per claim, in order.

    Raises:
        PermanentError: a claim's ``status`` is missing or not a string, or its ``call`` malformed (the caller
            applies the batch again in parts until that claim stands alone).
    """
    results: list[Result | None] = []
    changes: list[calls.StatusChange] = []
    for claim in claims:
        message = claim.payload
        call = _call(message)
        status = _text(message, "status")
        if status is None:
            raise PermanentError("status-update without status")
        call_id = _text(call, "id")
        if call_id is None:
            results.append(_no_call_id("status-update"))
            continue
        changes.append(
            calls.StatusChange(
                org_id=claim.org_id,
                vapi_call_id=call_id,
                status=status,
                facts=_call_facts(claim, call),
                ended_reason=_text(message, "endedReason"),
                at=parse_timestamp(message.get("timestamp")),
            )
        )
        results.append(None)
    row_ids = iter(await calls.record_statuses(conn, changes) if changes else [])
    applied = iter(changes)
    return [
        r if r is not None else {"applied": True, "call_id": str(next(row_ids)), "status": next(applied).status}
        for r in results
    ]


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


def _ending(claim: Claim) -> tuple[calls.CallEnding | None, calls.Recording | None]:
    """The report's call ending and recording (``None`` without ``call.id``)."""
    message = claim.payload
    call = _call(message)
    call_id = _text(call, "id")
    if call_id is None:
        return None, None
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
    mono, stereo = recording_urls(message)
    recording = mono or stereo
    return (
        calls.CallEnding(org_id=claim.org_id, vapi_call_id=call_id, end=end, facts=_call_facts(claim, call)),
        calls.Recording(claim.org_id, call_id, recording, stereo) if recording else None,
    )


async def handle_end_of_call_reports(conn: Conn, claims: Sequence[Claim]) -> list[Result]:
    """Record how each call ended (``update_call_completed_atomically``) and queue its recording once,
    one statement for the endings and one for the recordings.

    Duration is ``durationSeconds`` when present, else computed from
    ``startedAt``/``endedAt`` (FINDINGS.md §2).

    Returns:
        One result per claim, in order.

    Raises:
        PermanentError: a present field has the wrong type.
    """
    parts = [_ending(claim) for claim in claims]
    endings = [ending for ending, _ in parts if ending is not None]
    recordings = [recording for _, recording in parts if recording is not None]
    row_ids = iter(await calls.record_ends(conn, endings) if endings else [])
    queued = iter(await calls.queue_recordings(conn, recordings) if recordings else [])
    results: list[Result] = []
    for ending, recording in parts:
        if ending is None:
            results.append(_no_call_id("end-of-call-report"))
            continue
        results.append(
            {"applied": True, "call_id": str(next(row_ids)), "recording_queued": bool(recording and next(queued))}
        )
    return results


async def handle_hangs(conn: Conn, claims: Sequence[Claim]) -> list[Result]:
    """Count a stall of the assistant on each call (``record_call_hang``), one statement for all.

    Returns:
        One result per claim, in order.
    """
    call_ids = [_text(_call(claim.payload), "id") for claim in claims]
    counts = iter(
        await calls.record_hangs(conn, [(c.org_id, i) for c, i in zip(claims, call_ids, strict=True) if i])
        if any(call_ids)
        else []
    )
    return [{"applied": True, "hang_count": next(counts)} if i else _no_call_id("hang") for i in call_ids]
