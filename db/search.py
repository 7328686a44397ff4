"""The console's search: a call id, tool-call id, delivery id (or prefix), phone number, assistant or number id."""

from __future__ import annotations

import uuid
from typing import Any

from db.ids import InvalidId, prefix_range
from db.types import Conn

#: Rows of each kind a search shows at most.
SEARCH_LIMIT = 50


async def search(conn: Conn, q: str, *, tool_call_key: str) -> dict[str, list[dict[str, Any]]]:
    """Everything ``q`` names: a delivery id (or 8+ hex prefix), a Vapi call id, a tool-call id, a caller's
    phone number, an assistant or phone-number id. ``tool_call_key`` is the idempotency key a tool call
    with id ``q`` would have (:func:`workers.messages.tool_call_key`); the key's format is the model's.

    Returns:
        ``{deliveries, calls, appointments, routes}``, each newest first, at most :data:`SEARCH_LIMIT`.
        Every lookup is an index probe (per org for the per-org unique keys), never a scan of the log.
    """
    q = q.strip()
    found: dict[str, list[dict[str, Any]]] = {"deliveries": [], "calls": [], "appointments": [], "routes": []}
    if not q:
        return found
    columns = "d.id, d.org_id, d.event_type, d.status, d.received_at, d.vapi_call_id AS call_id"
    bounds: tuple[uuid.UUID, uuid.UUID] | None
    try:
        bounds = prefix_range(q)
    except InvalidId:
        bounds = None
    by_id = (
        await conn.fetch(
            f"SELECT {columns} FROM webhook_delivery_log d WHERE d.id BETWEEN $1 AND $2 LIMIT $3",
            *bounds,
            SEARCH_LIMIT,
        )
        if bounds is not None
        else []
    )
    calls = await conn.fetch(
        """
        SELECT c.id, c.org_id, c.vapi_call_id, c.customer_number, c.status, c.started_at, c.ended_reason
          FROM organizations o JOIN calls c ON c.org_id = o.id AND c.vapi_call_id = $1
        UNION
        SELECT c.id, c.org_id, c.vapi_call_id, c.customer_number, c.status, c.started_at, c.ended_reason
          FROM calls c WHERE c.customer_number = $1
        ORDER BY started_at DESC NULLS LAST LIMIT $2
        """,
        q,
        SEARCH_LIMIT,
    )
    call_ids = sorted({q, *(c["vapi_call_id"] for c in calls)})
    deliveries = await conn.fetch(
        f"""
        SELECT {columns} FROM webhook_delivery_log d WHERE d.vapi_call_id = ANY($1::text[])
        UNION
        SELECT {columns} FROM organizations o JOIN webhook_delivery_log d
            ON d.org_id = o.id AND d.event_id = $2
        ORDER BY received_at DESC LIMIT $3
        """,
        call_ids,
        tool_call_key,
        SEARCH_LIMIT,
    )
    numbers = sorted({n for n in [q, *(c["customer_number"] for c in calls)] if n})
    appointments = await conn.fetch(
        """
        SELECT a.id, a.org_id, a.scheduled_at, a.duration_minutes, a.status, a.service_type, l.name, l.phone
          FROM organizations o JOIN leads l ON l.org_id = o.id AND l.phone = ANY($1::text[])
          JOIN appointments a ON a.contact_id = l.id AND a.deleted_at IS NULL
         ORDER BY a.scheduled_at DESC LIMIT $2
        """,
        numbers,
        SEARCH_LIMIT,
    )
    routes = await conn.fetch(
        """
        SELECT 'assistant' AS kind, a.vapi_assistant_id AS vapi_id, o.id AS org_id, o.name AS org_name
          FROM agents a JOIN organizations o ON o.id = a.org_id WHERE a.vapi_assistant_id = $1
        UNION ALL
        SELECT 'phone number', p.vapi_phone_number_id, o.id, o.name
          FROM phone_numbers p JOIN organizations o ON o.id = p.org_id WHERE p.vapi_phone_number_id = $1
        """,
        q,
    )
    seen = {r["id"] for r in by_id}
    found["deliveries"] = [dict(r) for r in by_id] + [dict(r) for r in deliveries if r["id"] not in seen]
    found["calls"] = [dict(r) for r in calls]
    found["appointments"] = [dict(r) for r in appointments]
    found["routes"] = [dict(r) for r in routes]
    return found
