"""``webhook_quarantine``: authenticated messages that no tenant claims yet.

Stored so that nothing acknowledged is lost; operators route them once the
assistant or phone number is mapped (``vapi-ingest quarantine route``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, TypedDict, cast

from db.deliveries import DeliveryFacts, NewDelivery, find_ids, insert_many
from db.errors import AlreadyMapped, OrgNotFound, refusing_bad_rows
from db.statuses import DeliveryStatus
from db.types import Conn, DeliveryId, Executor, OrgId


async def insert(
    conn: Executor,
    *,
    event_type: str,
    event_id: str,
    assistant_id: str | None,
    phone_number_id: str | None,
    payload: dict[str, Any],
) -> uuid.UUID | None:
    """Store an unroutable message once per ``event_id``.

    Returns:
        The new row's id, or ``None`` if this key is already quarantined.
    """
    with refusing_bad_rows():
        result: uuid.UUID | None = await conn.fetchval(
            """
            INSERT INTO webhook_quarantine (event_type, event_id, assistant_id, phone_number_id, payload)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (event_id) DO NOTHING
            RETURNING id
            """,
            event_type,
            event_id,
            assistant_id,
            phone_number_id,
            payload,
        )
    return result


def _where(assistant_id: str | None, phone_number_id: str | None, event_type: str | None) -> tuple[str, list[Any]]:
    clauses, params = ["q.routed_at IS NULL"], []
    for column, value in (
        ("assistant_id", assistant_id),
        ("phone_number_id", phone_number_id),
        ("event_type", event_type),
    ):
        if value is not None:
            params.append(value)
            clauses.append(f"q.{column} = ${len(params)}")
    return " AND ".join(clauses), params


async def list_unrouted(
    conn: Executor,
    *,
    assistant_id: str | None = None,
    phone_number_id: str | None = None,
    event_type: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Unrouted messages, oldest first, without payloads."""
    where, params = _where(assistant_id, phone_number_id, event_type)
    rows = await conn.fetch(
        f"SELECT q.id, q.event_type, q.event_id, q.received_at, q.assistant_id, q.phone_number_id"
        f" FROM webhook_quarantine q WHERE {where} ORDER BY q.received_at LIMIT ${len(params) + 1}",
        *params,
        limit,
    )
    return [dict(r) for r in rows]


async def count_unrouted(
    conn: Executor,
    *,
    assistant_id: str | None = None,
    phone_number_id: str | None = None,
    event_type: str | None = None,
) -> int:
    """How many unrouted messages match (as :func:`list_unrouted`, without its limit)."""
    where, params = _where(assistant_id, phone_number_id, event_type)
    result: int = await conn.fetchval(f"SELECT count(*) FROM webhook_quarantine q WHERE {where}", *params)
    return result


class Sender(TypedDict):
    """An unrouted sender and how many of its messages wait."""

    assistant_id: str | None
    phone_number_id: str | None
    messages: int


async def senders(conn: Executor, *, limit: int = 100) -> list[Sender]:
    """Distinct ``(assistant_id, phone_number_id)`` of unrouted messages, with counts, most first; at most
    ``limit`` (a flood of made-up senders must not make a page of millions of rows)."""
    rows = await conn.fetch(
        "SELECT assistant_id, phone_number_id, count(*) AS messages FROM webhook_quarantine"
        " WHERE routed_at IS NULL GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT $1",
        limit,
    )
    return [cast(Sender, dict(r)) for r in rows]


async def map_sender(conn: Conn, org_id: uuid.UUID, *, assistant_id: str | None, phone_number_id: str | None) -> None:
    """Map the assistant and/or phone number to ``org_id`` (kept if already so). Run in the routing transaction.

    Raises:
        OrgNotFound: no such org.
        AlreadyMapped: one of them routes to another org.
    """
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)", org_id):
        raise OrgNotFound(f"no organization with id {org_id}")
    for table, column, label, value in (
        ("agents", "vapi_assistant_id", "assistant", assistant_id),
        ("phone_numbers", "vapi_phone_number_id", "phone number", phone_number_id),
    ):
        if value is None:
            continue
        owner = await conn.fetchval(
            f"INSERT INTO {table} (org_id, {column}) VALUES ($1, $2)"
            f" ON CONFLICT ({column}) DO UPDATE SET org_id = {table}.org_id RETURNING org_id",
            org_id,
            value,
        )
        if owner != org_id:
            raise AlreadyMapped(f"{label} {value} already routes to organization {owner}")


class Routed(NamedTuple):
    """What :func:`route` moved: ``moved`` messages in all, of which ``queued`` are new pending deliveries
    (their ids, to enqueue after commit); the rest were tool calls or types stored completed, or keys the
    org already had."""

    moved: int
    queued: list[DeliveryId]


async def route(
    conn: Conn,
    org_id: OrgId,
    *,
    max_attempts: int,
    processable: frozenset[str],
    facts_of: Callable[[str, Any], DeliveryFacts],
    assistant_id: str | None = None,
    phone_number_id: str | None = None,
    event_type: str | None = None,
) -> Routed:
    """Move matching unrouted messages into ``webhook_delivery_log`` for ``org_id``. Run in a transaction.

    Types in ``processable`` become ``pending`` deliveries; others (tool calls,
    which were already answered while unroutable, and unknown types) are
    stored ``completed`` with a note, so nothing acts behind a caller's back.
    A message whose key the org already has is marked routed to that delivery.
    With no assistant, phone number or type given, every unrouted message
    matches: callers must make that an explicit choice (``--all``).
    ``facts_of(event_type, payload)`` reads what the log stores beside a payload (the message model's
    :meth:`workers.messages.Envelope.facts`), so this module never reads Vapi's JSON.

    Returns:
        How many moved, and the new pending deliveries' ids, to enqueue after commit.
    """
    where, params = _where(assistant_id, phone_number_id, event_type)
    picked = await conn.fetch(
        f"SELECT q.id, q.event_type, q.event_id, q.payload, q.received_at FROM webhook_quarantine q"
        f" WHERE {where} ORDER BY q.received_at FOR UPDATE SKIP LOCKED",
        *params,
    )
    rows = [
        NewDelivery(
            org_id=org_id,
            event_type=row["event_type"],
            event_id=row["event_id"],
            payload=row["payload"],
            max_attempts=max_attempts,
            job_id=None,  # enqueued after commit (workers.sending), which records its message id
            status=DeliveryStatus.PENDING if row["event_type"] in processable else DeliveryStatus.COMPLETED,
            result=None
            if row["event_type"] in processable
            else {"applied": False, "reason": "routed from quarantine; not processed later"},
            received_at=row["received_at"],
            facts=facts_of(row["event_type"], row["payload"]),
        )
        for row in picked
    ]
    # The receiver's path: one statement, once per (org, key).
    new_ids = await insert_many(conn, rows)
    known = await find_ids(conn, org_id, [r.event_id for r, new in zip(rows, new_ids, strict=True) if new is None])
    delivery_ids = [new if new is not None else known[r.event_id] for r, new in zip(rows, new_ids, strict=True)]
    await conn.execute(
        "UPDATE webhook_quarantine q SET routed_at = now(), delivery_id = u.d"
        " FROM unnest($1::uuid[], $2::uuid[]) AS u(q, d) WHERE q.id = u.q",
        [row["id"] for row in picked],
        delivery_ids,
    )
    queued = [
        new for r, new in zip(rows, new_ids, strict=True) if new is not None and r.status == DeliveryStatus.PENDING
    ]
    return Routed(len(picked), queued)
