"""What the delivery log stores beside a payload (call id, tool name, caller's number): read by the message
model once, at insert, so ``db/`` filters on columns and never reads Vapi's JSON (issue 20, point 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from db.deliveries import DeliveryFacts
from tests.helpers import corpus_files, post, status_update, tool_call
from workers.messages import TOOL_TYPES, tool_call_key
from workers.parsing import parse, stored

DB_DIR = Path(__file__).resolve().parents[1] / "db"
BACKFILL = (DB_DIR / "migrations" / "0026_delivery_facts.sql").read_text()

#: Message shapes Vapi sends a tool name and a caller's number in (FINDINGS.md §1).
SHAPES: list[dict[str, Any]] = [
    {"type": "tool-calls", "call": {"id": "c1", "customer": {"number": "+1"}},
     "toolCallList": [{"id": "t1", "function": {"name": "book", "arguments": {}}}]},
    {"type": "tool-calls", "customer": {"number": "+2"}, "toolCallList": [{"id": "t2", "name": "flat"}]},
    {"type": "function-call", "call": {"id": "c3"}, "functionCall": {"name": "legacy", "parameters": {}}},
    {"type": "tool-calls", "call": "not an object", "customer": {"number": 7}, "toolCallList": "nor this"},
]  # fmt: skip


def test_the_model_reads_call_tool_and_caller_once_for_every_shape():
    """Each shape's facts, the first tool's name, and ``call.customer`` before the message's ``customer``."""
    got = [stored(m, m["type"]).facts() for m in SHAPES]

    assert [
        DeliveryFacts("c1", "book", "+1"),
        DeliveryFacts(None, "flat", "+2"),
        DeliveryFacts("c3", "legacy", None),
        DeliveryFacts(None, None, None),
    ] == got
    assert "tool-call:t1" == tool_call_key("t1")
    assert DeliveryFacts() == stored("not a message", "tool-calls").facts()


async def test_the_backfill_reads_what_the_model_reads(pool, org_id):
    """Migration 0026's UPDATE, run on rows stored without facts, fills the tool rows the console reads with
    what :meth:`Envelope.facts` reads: for the shapes above and every tool call in the payload corpus."""
    corpus = [json.loads(p.read_text())["message"] for p in corpus_files()]
    messages = SHAPES + [m for m in corpus if m.get("type") in TOOL_TYPES]
    for i, message in enumerate(messages):
        await pool.execute(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status) VALUES ($1, $2, $3, $4, 'completed')",
            org_id,
            message["type"],
            f"k-{i}",
            message,
        )
    update = BACKFILL[BACKFILL.index("CREATE FUNCTION") :]
    await pool.execute(update)
    rows = await pool.fetch(
        "SELECT tool_name, customer_number FROM webhook_delivery_log ORDER BY substr(event_id, 3)::int"
    )

    expected = [(f.tool_name, f.customer_number) for f in (stored(m, m["type"]).facts() for m in messages)]
    assert len(messages) > len(SHAPES)
    assert expected == [(r["tool_name"], r["customer_number"]) for r in rows]


def test_no_query_in_db_reads_a_vapi_payload_path():
    """``db/`` reads stored columns; the only JSON paths into a payload are in the migrations that filled a
    column for rows stored before it existed."""
    readers = {p.name: re.findall(r"payload\s*->", p.read_text()) for p in DB_DIR.glob("*.py")}

    assert {} == {name: found for name, found in readers.items() if found}


async def test_the_receiver_stores_each_rows_facts(client, settings, pool):
    """A status update's row holds its call id; a tool-call message's own row and its tool call's row hold
    the call, the tool and the caller's number, as Vapi sent them."""
    await post(client, settings, status_update("c-facts", "ringing"))
    await post(client, settings, tool_call("t-facts", "checkAvailability", {}, customer="+442071838751"))

    rows = await pool.fetch(
        "SELECT event_id, vapi_call_id, tool_name, customer_number FROM webhook_delivery_log ORDER BY event_id"
    )

    assert [
        ("status-update:c-facts:ringing", "c-facts", None, None),
        ("tool-call:t-facts", "call-booking", "checkAvailability", "+442071838751"),
    ] == [tuple(r) for r in rows if not r["event_id"].startswith("tool-calls:message:")]
    message_row = [r for r in rows if r["event_id"].startswith("tool-calls:message:")]
    assert [("call-booking", "checkAvailability", "+442071838751")] == [tuple(r)[1:] for r in message_row]


def test_a_parsed_message_and_its_stored_copy_have_the_same_facts():
    """What the receiver stores for a tool call is read back the same by handlers and the console."""
    envelope = parse(json.dumps(tool_call("t-same", "book", {}, customer="+1555")).encode())
    invocation = envelope.tool_invocations()[0]

    slim = stored(envelope.tool_call_message(invocation), envelope.type)

    assert envelope.facts(invocation) == slim.facts()
