"""The typed rows ``db/`` hands to the outer layer name exactly the columns their queries return: each
function runs against a database holding one of everything, and its rows' keys are compared with its
TypedDict (issue 20, point 3). A column added to a query without its type, or a type without its column,
fails here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from db import (
    call_backs,
    dead_letters,
    discards,
    job_runs,
    orgs,
    quarantine,
    reports,
    reveals,
    throughput,
    tokens,
)
from db.filters import DeliveryFilter
from tests.helpers import insert_delivery, tool_call

SINCE = datetime.now(UTC) - timedelta(days=1)


def _keys(kind: Any) -> set[str]:
    return set(kind.__required_keys__ | kind.__optional_keys__)


async def test_every_typed_row_has_exactly_its_columns(pool, org_id):
    """Orgs, routes, tokens, deliveries (list, detail, statistics, percentiles), throughput, tool outcomes,
    dead-letter groups, missed calls, call-backs, discards, reveals, quarantine senders and job runs."""
    await orgs.add_agent(pool, org_id, "asst-rows")
    await tokens.create(pool, org_id, name="desk")
    message = tool_call("t-rows", "bookClinicAppointment", {}, customer="+15550100")["message"]
    missed = await insert_delivery(
        pool, org_id=org_id, event_type="tool-calls", event_id="tool-call:t-rows", payload=message,
        max_attempts=3, job_id=None, status="missed",
    )  # fmt: skip
    done = await insert_delivery(
        pool, org_id=org_id, event_type="hang", event_id="hang:rows", payload={"type": "hang"}, max_attempts=3,
        job_id=None, status="completed",
    )  # fmt: skip
    await pool.execute("UPDATE webhook_delivery_log SET last_attempt_at = received_at WHERE id = $1", done)
    dead = [
        await insert_delivery(
            pool, org_id=org_id, event_type="hang", event_id=f"hang:dead-{i}", payload={"type": "hang"},
            max_attempts=3, job_id=None,
        )
        for i in range(2)
    ]  # fmt: skip
    await pool.execute(
        "UPDATE webhook_delivery_log SET status = 'dead_letter', error_message = 'boom' WHERE id = ANY($1)", dead
    )
    await quarantine.insert(
        pool, event_type="hang", event_id="hang:q", assistant_id="asst-unknown", phone_number_id=None, payload={}
    )
    await job_runs.record_success(pool, "retention", 3)
    async with pool.acquire() as conn:
        await call_backs.call_back(conn, missed, called_by="desk", note="booked")
        await discards.discard(conn, dead[1], discarded_by="desk", reason="test")
        await reveals.record_delivery(conn, reveals.Accessor("desk", "console", None, "127.0.0.1"), missed, "payload")
        rows: list[tuple[Any, Any]] = [
            (orgs.OrgRow, await orgs.list_orgs(conn)),
            (orgs.OrgDetail, [await orgs.org_detail(conn, org_id)]),
            (orgs.RouteRow, await orgs.list_routes(conn, "assistant")),
            (orgs.Clinic, list((await orgs.clinics_by_id(conn, {org_id})).values())),
            (tokens.TokenRow, await tokens.list_tokens(conn)),
            (reports.DeliveryRow, await reports.list_deliveries(conn, DeliveryFilter())),
            (reports.DeliveryDetail, [await reports.get_delivery(conn, missed)]),
            (reports.TypeStats, await reports.delivery_stats(conn, SINCE)),
            (reports.ProcessingTime, await reports.processing_time(conn, SINCE)),
            (throughput.MinuteCounts, await throughput.per_minute(conn)),
            (throughput.ToolOutcome, await throughput.tool_outcomes(conn)),
            (dead_letters.DeadLetterGroup, await dead_letters.dead_letter_groups(conn)),
            (call_backs.MissedCall, await call_backs.missed_calls(conn)),
            (call_backs.CallBack, [await call_backs.call_back_of(conn, missed)]),
            (discards.Discard, [await discards.discard_of(conn, dead[1])]),
            (reveals.Reveal, await reveals.of_delivery(conn, missed)),
            (quarantine.Sender, await quarantine.senders(conn)),
            (job_runs.JobRun, list((await job_runs.last_runs(conn)).values())),
        ]

    assert [] == [kind.__name__ for kind, found in rows if not found or None in found]
    mismatched = {
        kind.__name__: (sorted(set(found[0]) - _keys(kind)), sorted(_keys(kind) - set(found[0])))
        for kind, found in rows
        if set(found[0]) != _keys(kind)
    }
    assert {} == mismatched
