"""Answer tool calls (``tool-calls`` and legacy ``function-call``) from a registry of tools.

A tool is an async function ``(conn, org_id, invocation, message: Envelope) -> str``
that returns the one-line result Vapi reads to the caller, or raises
:class:`ToolError` with a one-line error. Tools run inside a tenant scope:
row-level security, not only their own WHERE clauses, keeps them to their org. Results follow Vapi's rules
(FINDINGS.md §1, "Tool-call reply rules"): strings, single-line, and a
tool this service does not know gets an ``error`` result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from db.tenancy import tenant_scope
from db.types import Conn, OrgId
from workers import metrics
from workers.encryption import Keyring, UnreadableArgument, decrypt_arguments, redact
from workers.errors import PermanentError, ToolError
from workers.handlers.booking import BOOKING_TOOLS, Tool
from workers.messages import Envelope, ToolInvocation, reply_entry, tool_call_key

#: Tools by the name Vapi sends in ``function.name``.
TOOLS: dict[str, Tool] = {**BOOKING_TOOLS}


def find_invocation(message: Envelope, event_id: str) -> ToolInvocation:
    """The invocation a stored tool delivery with idempotency key ``event_id`` stands for.

    Raises:
        PermanentError: the stored message holds no such tool call.
    """
    for invocation in message.tool_invocations():
        if invocation.tool_call_id is None or event_id == tool_call_key(invocation.tool_call_id):
            return invocation
    raise PermanentError("the message holds no tool call for this delivery")


@dataclass(frozen=True)
class Answered:
    """A tool call's ``results[]`` entry: ``reply`` for the caller waiting on it, ``stored`` for the
    delivery's row, the same but for any decrypted argument value, replaced by ``<encrypted>``."""

    reply: dict[str, Any]
    stored: dict[str, Any]


async def handle_tool_call(conn: Conn, org_id: OrgId, message: Envelope, event_id: str, keyring: Keyring) -> Answered:
    """Run the tool call a stored delivery with idempotency key ``event_id`` stands for, its encrypted
    arguments decrypted in memory (:mod:`workers.encryption`).

    An argument that cannot be decrypted is answered as a tool error naming it and why (never its value),
    counted in ``vapi_tool_arguments_unreadable_total``; the tool does not run.
    """
    invocation = find_invocation(message, event_id)
    tool = TOOLS.get(invocation.name)
    if tool is None:
        entry = reply_entry(invocation, error=f"unknown tool: {invocation.name}")
        return Answered(entry, entry)
    try:
        opened = decrypt_arguments(invocation.arguments, keyring)
    except UnreadableArgument as exc:
        metrics.TOOL_ARGUMENTS_UNREADABLE.labels(invocation.name).inc()
        entry = reply_entry(invocation, error=str(exc))
        return Answered(entry, entry)
    if opened.paths:
        invocation = dataclasses.replace(invocation, arguments=opened.arguments)
    try:
        async with tenant_scope(conn, org_id, source_event_id=event_id):
            reply = reply_entry(invocation, result=await tool(conn, org_id, invocation, message))
    except ToolError as exc:
        reply = reply_entry(invocation, error=str(exc))
    return Answered(reply, redact(reply, opened.plaintexts))
