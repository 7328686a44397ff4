"""The Vapi message model: parse the ``{"message": {...}}`` envelope, derive idempotency keys and tool replies.

Below both the receiver and the workers, so both speak about messages the same way.

Every accessor here tolerates wrong types (a ``call`` that is a string, a
``timestamp`` that is a list): Vapi's payloads drift (FINDINGS.md §5), and a
malformed optional field must not turn into a 5xx.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from db.deliveries import DeliveryFacts

#: Types in Vapi's ServerMessage union and serverMessages enum (FINDINGS.md §1).
#: Anything else is stored and marked completed as unhandled.
KNOWN_TYPES = frozenset(
    {
        "status-update",
        "end-of-call-report",
        "tool-calls",
        "function-call",
        "assistant-request",
        "transfer-destination-request",
        "handoff-destination-request",
        "knowledge-base-request",
        "hang",
        "transcript",
        'transcript[transcriptType="final"]',
        "conversation-update",
        "speech-update",
        "model-output",
        "user-interrupted",
        "transfer-update",
        "phone-call-control",
        "language-change-detected",
        "language-changed",
        "voice-input",
        "assistant.speechStarted",
        "assistant.started",
        "voice-request",
        "call.endpointing.request",
        "campaign.predial",
        "chat.created",
        "chat.deleted",
        "session.created",
        "session.updated",
        "session.deleted",
        "call.deleted",
        "call.delete.failed",
        "call.artifact.upload",
    }
)

#: Longest text copied from a message into each tool call's own row (a name, a number).
SHORT_TEXT_CHARS = 256

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
        item: The list entry (or legacy ``functionCall`` object) as sent.
        is_async: The tool is defined ``async: true`` in Vapi (its
            ``toolWithToolCallList`` entry says so): nobody waits for the reply.
    """

    tool_call_id: str | None
    name: str
    arguments: dict[str, Any]
    item: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    is_async: bool = False


@dataclass(frozen=True)
class Envelope:
    """A parsed server message.

    Attributes:
        message: The ``message`` object as sent.
        type: ``message.type`` (``tool-calls`` when a tool-call list is present
            and the optional type is missing, as the OAS allows).
        timestamp: ``message.timestamp`` normalised to an aware UTC datetime,
            from an ISO-8601 string or epoch milliseconds; ``None`` if absent
            or unparseable.
        body_sha256: SHA-256 of the request body, hex; ``None`` for a message read back from its row
            (:func:`workers.parsing.stored`), whose idempotency key is the row's ``event_id``.
        normalised: Kinds of text replaced to make the message storable
            (``invalid_utf8``, ``nul``, ``unpaired_surrogate``), sorted; empty if none.
    """

    message: dict[str, Any]
    type: str
    timestamp: datetime | None
    body_sha256: str | None
    normalised: tuple[str, ...] = ()

    @property
    def call(self) -> dict[str, Any]:
        call = self.message.get("call")
        return call if isinstance(call, dict) else {}

    @property
    def call_id(self) -> str | None:
        return _str(self.call.get("id"))

    @property
    def customer_number(self) -> str | None:
        """The caller's number as sent: ``call.customer.number``, else ``message.customer.number``; ``None`` if
        neither is a non-empty string (FINDINGS.md §1: both are ``customer{number, ...}``)."""
        for customer in (self.call.get("customer"), self.message.get("customer")):
            number = customer.get("number") if isinstance(customer, dict) else None
            if _str(number):
                return str(number)
        return None

    @property
    def tool_name(self) -> str | None:
        """The name of the first tool call (a stored tool-call delivery holds exactly one); ``None`` without one."""
        invocations = self._invocations
        return invocations[0].name if invocations else None

    def facts(self, invocation: ToolInvocation | None = None) -> DeliveryFacts:
        """What the delivery log stores beside the payload, for its readers to filter on without reading
        Vapi's JSON: the call id, the caller's number, and the tool name (``invocation``'s, for a tool call's
        own row)."""
        return DeliveryFacts(
            vapi_call_id=self.call_id,
            tool_name=invocation.name if invocation is not None else self.tool_name,
            customer_number=self.customer_number,
        )

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
        ``functionCall: {name, parameters}`` (FINDINGS.md §1). Read once per
        envelope: parsing, the receiver and the idempotency keys all ask.
        """
        return list(self._invocations)

    @cached_property
    def _invocations(self) -> tuple[ToolInvocation, ...]:
        if self.type == "function-call":
            fc = self.message.get("functionCall")
            if not isinstance(fc, dict) or not _str(fc.get("name")):
                return ()
            return (ToolInvocation(_str(fc.get("id")), str(fc["name"]), _arguments(fc.get("parameters")), fc),)
        items = self.message.get("toolCallList")
        if not isinstance(items, list):
            return ()
        async_ids = self._async_tool_call_ids()
        out: list[ToolInvocation] = []
        for item in items:
            if not isinstance(item, dict) or not _str(item.get("id")):
                continue
            call_id = str(item["id"])
            fn = item.get("function")
            if isinstance(fn, dict) and _str(fn.get("name")):
                name, args = str(fn["name"]), fn.get("arguments")
            elif _str(item.get("name")):
                name, args = str(item["name"]), item.get("parameters", item.get("arguments"))
            else:
                continue
            out.append(ToolInvocation(call_id, name, _arguments(args), item, call_id in async_ids))
        return tuple(out)

    def _async_tool_call_ids(self) -> frozenset[str]:
        """Ids of tool calls whose tool is ``async: true`` (``toolWithToolCallList[i]``; FINDINGS.md §1)."""
        tools = self.message.get("toolWithToolCallList")
        if not isinstance(tools, list):
            return frozenset()
        ids = set()
        for tool in tools:
            if isinstance(tool, dict) and tool.get("async") is True:
                call = tool.get("toolCall")
                if isinstance(call, dict) and _str(call.get("id")):
                    ids.add(str(call["id"]))
        return frozenset(ids)

    def tool_call_message(self, invocation: ToolInvocation) -> dict[str, Any]:
        """What one tool call's delivery stores: its own entry and who is calling, not the whole message.

        A message's other parts (the conversation so far, n tool calls) are
        stored once, in the message's own row, so storage stays linear in the
        message. Keeps the shape of a Vapi message (``toolCallList`` of one,
        or ``functionCall``), so :meth:`tool_invocations` reads it back.
        """
        call = self.call
        slim_call: dict[str, Any] = {k: call[k] for k in ("id", "assistantId", "phoneNumberId") if _str(call.get(k))}
        for customer in (call.get("customer"), self.message.get("customer")):
            if isinstance(customer, dict):
                who = {k: customer[k] for k in ("number", "name") if _short(customer.get(k))}
                if who:
                    slim_call["customer"] = who
                    break
        slim: dict[str, Any] = {"type": self.type, "call": slim_call}
        if "timestamp" in self.message:
            slim["timestamp"] = self.message["timestamp"]
        if self.type == "function-call":
            slim["functionCall"] = invocation.item
        else:
            slim["toolCallList"] = [invocation.item]
        return slim

    def message_key(self) -> str:
        """Idempotency key of a tool-call message's own row: its tool-call ids, hashed (bounded length).

        Raises:
            ValueError: the message was read back from its row and has no tool-call id (its key is the row's).
        """
        ids = sorted(i.tool_call_id or "" for i in self.tool_invocations())
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest() if any(ids) else self._body_sha256()
        return f"{self.type}:message:{digest}"

    def event_id(self) -> str:
        """The idempotency key for messages other than tool calls (FINDINGS.md §4).

        ``end-of-call-report``: the call id; ``status-update``: call id and
        status; legacy ``function-call``: call id, timestamp and function name;
        others: type, subject id (call, else chat, session or campaign) and
        normalised timestamp. A message lacking a subject id or a timestamp
        falls back to a hash of its body.

        Raises:
            ValueError: that fallback for a message read back from its row (its key is the row's).
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
        return f"{self.type}:sha256:{self._body_sha256()}"

    def _body_sha256(self) -> str:
        if self.body_sha256 is None:
            raise ValueError("a message read back from its row has no body hash: its key is the row's event_id")
        return self.body_sha256

    def _other_subject(self) -> str | None:
        for key in ("chat", "session"):
            obj = self.message.get(key)
            if isinstance(obj, dict) and _str(obj.get("id")):
                return f"{key}:{obj['id']}"
        campaign = _str(self.message.get("campaignId"))
        return f"campaign:{campaign}" if campaign else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= SHORT_TEXT_CHARS


def _arguments(value: Any) -> dict[str, Any]:
    """Vapi sends arguments as an object or a JSON string (FINDINGS.md §1, LABS)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def tool_call_key(tool_call_id: str) -> str:
    """The idempotency key of the tool call with Vapi's id ``tool_call_id`` (FINDINGS.md §4)."""
    return f"tool-call:{tool_call_id}"


def tool_event_id(envelope: Envelope, invocation: ToolInvocation) -> str:
    """Idempotency key of one invocation: its tool-call id (FINDINGS.md §4), else the message's key."""
    if invocation.tool_call_id:
        return tool_call_key(invocation.tool_call_id)
    return envelope.event_id()


def one_line(text: str) -> str:
    """Vapi requires single-line strings in tool results."""
    return " ".join(text.split())


def reply_entry(invocation: ToolInvocation, *, result: str | None = None, error: str | None = None) -> dict[str, Any]:
    """One ``results[]`` entry: ``{toolCallId, name, result|error}``."""
    entry: dict[str, Any] = {"toolCallId": invocation.tool_call_id, "name": invocation.name}
    if error is not None:
        entry["error"] = one_line(error)
    else:
        entry["result"] = one_line(result or "")
    return entry
