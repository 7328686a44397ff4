"""Parse Vapi's ``{"message": {...}}`` envelope and derive what storage needs.

Every accessor here tolerates wrong types (a ``call`` that is a string, a
``timestamp`` that is a list): Vapi's payloads drift (FINDINGS.md §5), and a
malformed optional field must not turn into a 5xx.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: Types in Vapi's ServerMessage union and serverMessages enum (FINDINGS.md §1).
#: Anything else is stored and marked completed as unhandled.
KNOWN_TYPES = frozenset(
    {
        "status-update", "end-of-call-report", "tool-calls", "function-call", "assistant-request",
        "transfer-destination-request", "handoff-destination-request", "knowledge-base-request",
        "hang", "transcript", "transcript[transcriptType=\"final\"]", "conversation-update",
        "speech-update", "model-output", "user-interrupted", "transfer-update", "phone-call-control",
        "language-change-detected", "language-changed", "voice-input", "assistant.speechStarted",
        "assistant.started", "voice-request", "call.endpointing.request", "campaign.predial",
        "chat.created", "chat.deleted", "session.created", "session.updated", "session.deleted",
        "call.deleted", "call.delete.failed", "call.artifact.upload",
    }
)  # fmt: skip

#: Types whose tool invocations are answered in the HTTP response.
TOOL_TYPES = frozenset({"tool-calls", "function-call"})


class InvalidEnvelope(Exception):
    """The body is not a Vapi server message; the message is the 400 reason."""


@dataclass(frozen=True, slots=True)
class ToolInvocation:
    """One tool call inside a ``tool-calls`` or ``function-call`` message.

    Attributes:
        tool_call_id: Vapi's (the LLM's) tool-call id, or ``None`` for legacy
            ``function-call`` messages, which carry none.
        name: The tool (function) name.
        arguments: Parsed arguments; a JSON-string argument is decoded, and
            anything that is not an object becomes ``{}``.
    """

    tool_call_id: str | None
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed server message.

    Attributes:
        message: The ``message`` object as sent.
        type: ``message.type`` (``tool-calls`` when a tool-call list is present
            and the optional type is missing, as the OAS allows).
        timestamp: ``message.timestamp`` normalised to an aware UTC datetime,
            from an ISO-8601 string or epoch milliseconds; ``None`` if absent
            or unparseable.
    """

    message: dict[str, Any]
    type: str
    timestamp: datetime | None
    body_sha256: str

    @property
    def call(self) -> dict[str, Any]:
        call = self.message.get("call")
        return call if isinstance(call, dict) else {}

    @property
    def call_id(self) -> str | None:
        return _str(self.call.get("id"))

    @property
    def assistant_id(self) -> str | None:
        """``message.assistant.id``, else ``call.assistantId``."""
        assistant = self.message.get("assistant")
        if isinstance(assistant, dict) and _str(assistant.get("id")):
            return _str(assistant.get("id"))
        return _str(self.call.get("assistantId"))

    @property
    def phone_number_id(self) -> str | None:
        """``call.phoneNumberId``, else ``message.phoneNumber.id``."""
        found = _str(self.call.get("phoneNumberId"))
        if found:
            return found
        number = self.message.get("phoneNumber")
        return _str(number.get("id")) if isinstance(number, dict) else None

    def tool_invocations(self) -> list[ToolInvocation]:
        """The tool calls to answer, in request order; empty for other types.

        Accepts ``toolCallList[i].function.{name,arguments}`` (real traffic),
        the documented flattened ``{id, name, parameters}``, and legacy
        ``functionCall: {name, parameters}`` (FINDINGS.md §1).
        """
        if self.type == "function-call":
            fc = self.message.get("functionCall")
            if not isinstance(fc, dict) or not _str(fc.get("name")):
                return []
            return [ToolInvocation(_str(fc.get("id")), str(fc["name"]), _arguments(fc.get("parameters")))]
        items = self.message.get("toolCallList")
        if not isinstance(items, list):
            return []
        out: list[ToolInvocation] = []
        for item in items:
            if not isinstance(item, dict) or not _str(item.get("id")):
                continue
            fn = item.get("function")
            if isinstance(fn, dict) and _str(fn.get("name")):
                out.append(ToolInvocation(str(item["id"]), str(fn["name"]), _arguments(fn.get("arguments"))))
            elif _str(item.get("name")):
                args = item.get("parameters", item.get("arguments"))
                out.append(ToolInvocation(str(item["id"]), str(item["name"]), _arguments(args)))
        return out

    def event_id(self) -> str:
        """The idempotency key for messages other than tool calls (FINDINGS.md §4).

        ``end-of-call-report``: the call id; ``status-update``: call id and
        status; legacy ``function-call``: call id, timestamp and function name;
        others: type, subject id (call, else chat, session or campaign) and
        normalised timestamp. A message lacking a subject id or a timestamp
        falls back to a hash of its body.
        """
        call_id = self.call_id
        if self.type == "end-of-call-report" and call_id:
            return f"end-of-call-report:{call_id}"
        if self.type == "status-update" and call_id and _str(self.message.get("status")):
            return f"status-update:{call_id}:{self.message['status']}"
        subject = call_id or self._other_subject()
        if subject and self.timestamp is not None:
            ts = self.timestamp.isoformat(timespec="milliseconds")
            if self.type == "function-call":
                invocations = self.tool_invocations()
                name = invocations[0].name if invocations else ""
                return f"function-call:{subject}:{ts}:{name}"
            return f"{self.type}:{subject}:{ts}"
        return f"{self.type}:sha256:{self.body_sha256}"

    def _other_subject(self) -> str | None:
        for key in ("chat", "session"):
            obj = self.message.get(key)
            if isinstance(obj, dict) and _str(obj.get("id")):
                return f"{key}:{obj['id']}"
        campaign = _str(self.message.get("campaignId"))
        return f"campaign:{campaign}" if campaign else None


def parse(body: bytes) -> Envelope:
    """Parse a request body into an :class:`Envelope`.

    NUL characters in strings become U+FFFD (PostgreSQL cannot store them).

    Raises:
        InvalidEnvelope: if the body is not JSON (NaN and Infinity are not), not an object, has no
            ``message`` object, or no string ``message.type`` (a missing type
            is accepted only with a ``toolCallList``, as the OAS allows).
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidEnvelope("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidEnvelope("body is not a JSON object")
    message = data.get("message")
    if not isinstance(message, dict):
        raise InvalidEnvelope("body has no 'message' object")
    if b"\\u0000" in body:
        # PostgreSQL cannot store NUL in text or jsonb; keep the message, mark the spot.
        message = _without_nul(message)
    mtype = message.get("type")
    if mtype is None and isinstance(message.get("toolCallList"), list):
        mtype = "tool-calls"
    if not isinstance(mtype, str) or not mtype.strip():
        raise InvalidEnvelope("message.type is missing or not a string")
    if len(mtype) > 200:
        raise InvalidEnvelope("message.type is longer than 200 characters")
    return Envelope(
        message=message,
        type=mtype,
        timestamp=parse_timestamp(message.get("timestamp")),
        body_sha256=hashlib.sha256(body).hexdigest(),
    )


def parse_timestamp(value: Any) -> datetime | None:
    """Normalise a Vapi timestamp: ISO-8601 string or epoch milliseconds (FINDINGS.md §1).

    Returns:
        An aware UTC datetime, or ``None`` for anything else (including
        numbers outside years 1970-9999).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if not 0 <= value < 253402300800000:
            return None
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    if isinstance(value, str) and value:
        text = value.strip()
        if text.isdigit():
            return parse_timestamp(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    return None


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); Python would accept them and PostgreSQL would not."""
    raise ValueError(f"{name} is not valid JSON")


def _without_nul(value: Any) -> Any:
    """``value`` with every NUL character in strings and keys replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _arguments(value: Any) -> dict[str, Any]:
    """Vapi sends arguments as an object or a JSON string (FINDINGS.md §1, LABS)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}
