"""Plain async handlers, one per message type, testable without Dramatiq.

:data:`HANDLERS` is the single source of what gets processed: the receiver
stores a type without a handler as ``completed`` and sends no message for
it, processing looks the handler up, and quarantine routing asks it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from db.deliveries import Claim
from db.types import Conn
from workers.handlers import calls, tools
from workers.messages import TOOL_TYPES

#: A handler runs inside the delivery's transaction and returns the result stored on the row.
Handler = Callable[[Conn, Claim], Awaitable[dict[str, Any]]]


async def _status_update(conn: Conn, claim: Claim) -> dict[str, Any]:
    return await calls.handle_status_update(conn, claim.org_id, claim.payload)


async def _end_of_call_report(conn: Conn, claim: Claim) -> dict[str, Any]:
    return await calls.handle_end_of_call_report(conn, claim.org_id, claim.payload)


async def _hang(conn: Conn, claim: Claim) -> dict[str, Any]:
    return await calls.handle_hang(conn, claim.org_id, claim.payload)


async def _tool_call(conn: Conn, claim: Claim) -> dict[str, Any]:
    # Only tools defined async: true reach a worker; synchronous ones run in their request (workers.inline).
    return await tools.handle_tool_call(conn, claim.org_id, claim.payload, claim.event_type, claim.event_id)


#: Message type -> handler.
HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "status-update": _status_update,
        "end-of-call-report": _end_of_call_report,
        "hang": _hang,
        "tool-calls": _tool_call,
        "function-call": _tool_call,
    }
)

#: Types a worker processes after the request answered. Tool calls are not among them: a
#: synchronous one runs in its own request, an async one is queued by the receiver itself.
QUEUED_TYPES = frozenset(HANDLERS) - TOOL_TYPES
