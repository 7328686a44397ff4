"""Plain async handlers, one per message type, testable without Dramatiq.

:data:`HANDLERS` is the single source of what gets processed: the receiver
stores a type without a handler as ``completed`` and sends no message for
it, processing looks the handler up, and quarantine routing asks it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from db.deliveries import Claim
from db.types import Conn
from workers.encryption import Keyring
from workers.handlers import calls, tools
from workers.messages import TOOL_TYPES
from workers.parsing import stored

#: A handler applies claims of one message type inside their batch's transaction and returns, per claim and
#: in order, the result stored on its row. It raises if any claim fails (the batch is then applied in parts).
#: The keyring opens encrypted tool arguments (:mod:`workers.encryption`).
Handler = Callable[[Conn, Sequence[Claim], Keyring], Awaitable[list[dict[str, Any]]]]
Applier = Callable[[Conn, Sequence[Claim]], Awaitable[list[dict[str, Any]]]]


async def _tool_calls(conn: Conn, claims: Sequence[Claim], keyring: Keyring) -> list[dict[str, Any]]:
    # Only tools defined async: true reach a worker; synchronous ones run in their request (workers.inline).
    # Nobody waits for an async tool's reply: only the row's copy, decrypted values redacted, is kept.
    return [
        (await tools.handle_tool_call(conn, c.org_id, stored(c.payload, c.event_type), c.event_id, keyring)).stored
        for c in claims
    ]


def _keyless(handler: Applier) -> Handler:
    """A handler of messages that carry no encrypted arguments."""

    async def run(conn: Conn, claims: Sequence[Claim], keyring: Keyring) -> list[dict[str, Any]]:
        return await handler(conn, claims)

    return run


#: Message type -> handler.
HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "status-update": _keyless(calls.handle_status_updates),
        "end-of-call-report": _keyless(calls.handle_end_of_call_reports),
        "hang": _keyless(calls.handle_hangs),
        "tool-calls": _tool_calls,
        "function-call": _tool_calls,
    }
)

#: Types a worker processes after the request answered. Tool calls are not among them: a
#: synchronous one runs in its own request, an async one is queued by the receiver itself.
QUEUED_TYPES = frozenset(HANDLERS) - TOOL_TYPES
