"""A synchronous tool call acts only while its caller waits: deadline, killed web process, PostgreSQL outage,
replay, and cost linear in the message (real PostgreSQL, Redis, HTTP and processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import threading
import time
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from ingest.app import create_app
from tests.helpers import (
    NOTHING_LEFT_TO_RUN,
    SIGNER,
    book_args,
    business_day,
    post,
    settle,
    signed_headers,
    tool_call,
    wait_until,
)
from tests.procs import cli, sql, start, stop, wait_for, wait_sql
from workers.inline import MISSED_REPLY

ADMIN = "admin-token-0123456789"


def _slot(day: Any, hhmm: str) -> tuple[datetime, datetime]:
    start_at = datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=ZoneInfo("Europe/London"))
    return start_at, start_at + timedelta(minutes=30)


async def _hold_calendar(dsn: str, org_id: Any, day: Any, hhmm: str) -> asyncpg.Connection:
    """A connection holding the calendar locks of one slot in an open transaction (a booking stuck behind it)."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("BEGIN")
    await conn.fetchval("SELECT lock_schedule_range($1, $2, $3)", org_id, *_slot(day, hhmm))
    return conn


async def test_a_booking_blocked_past_the_deadline_is_rolled_back_and_missed(
    aiohttp_client, settings, broker, pool, org_id
):
    """A booking waits on a lock past TOOL_CALL_TIMEOUT_S: the caller hears the call-back line, the row is missed,
    and once the lock is released nothing is ever booked."""
    client = await aiohttp_client(create_app(dataclasses.replace(settings, tool_call_timeout_s=1.0), broker=broker))
    day = business_day()
    holder = await _hold_calendar(settings.database_url, org_id, day, "10:00")
    try:
        started = time.monotonic()
        resp = await post(client, settings, tool_call("t-late", "bookClinicAppointment", book_args(day, "10:00")))
        waited_s = time.monotonic() - started
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
    body = await resp.json()

    assert 200 == resp.status
    assert MISSED_REPLY == body["results"][0]["error"]
    assert 1.0 <= waited_s < 4.0
    row = await pool.fetchrow(
        "SELECT status, error_message FROM webhook_delivery_log WHERE event_id = 'tool-call:t-late'"
    )
    assert "missed" == row["status"] and "deadline" in row["error_message"]
    await settle(broker)  # a worker that wrongly picked it up would have booked by now
    assert 0 == await pool.fetchval("SELECT count(*) FROM appointments")


async def test_a_tool_error_is_missed_with_the_callers_number_and_request(client, settings, pool):
    """A tool that fails (here the booking function is gone) leaves a missed row holding who called and what they asked."""
    await pool.execute("ALTER FUNCTION book_appointment_atomic RENAME TO book_appointment_atomic_gone")
    body = tool_call("t-broken", "bookClinicAppointment", book_args(business_day(), "11:00"), customer="+442071838751")

    resp = await post(client, settings, body)

    assert MISSED_REPLY == (await resp.json())["results"][0]["error"]
    row = await pool.fetchrow("SELECT status, payload FROM webhook_delivery_log WHERE event_id = 'tool-call:t-broken'")
    assert "missed" == row["status"]
    assert "+442071838751" == row["payload"]["call"]["customer"]["number"]
    assert "bookClinicAppointment" == row["payload"]["toolCallList"][0]["function"]["name"]


async def test_replay_refuses_tool_calls_over_the_api(aiohttp_client, settings, broker, pool, org_id):
    """retry-failed and replay by id or status refuse synchronous tool calls with the reason, and book nothing."""
    api = await aiohttp_client(create_app(dataclasses.replace(settings, admin_token=ADMIN), broker=broker))
    await pool.execute("ALTER FUNCTION book_appointment_atomic RENAME TO book_appointment_atomic_gone")
    await post(api, settings, tool_call("t-api", "bookClinicAppointment", book_args(business_day(), "12:00")))
    await pool.execute("ALTER FUNCTION book_appointment_atomic_gone RENAME TO book_appointment_atomic")
    delivery_id = await pool.fetchval("SELECT id FROM webhook_delivery_log WHERE event_id = 'tool-call:t-api'")
    # Any other path that left one dead-lettered (e.g. a row from before migration 0005) is refused too.
    await pool.execute("UPDATE webhook_delivery_log SET status = 'dead_letter' WHERE id = $1", delivery_id)
    auth_header = {"Authorization": f"Bearer {ADMIN}"}

    one = await api.post(f"/api/webhook-metrics/retry-failed/{delivery_id}", headers=auth_header)
    by_id = await api.post("/api/webhook-metrics/replay", json={"ids": [str(delivery_id)]}, headers=auth_header)
    by_status = await api.post("/api/webhook-metrics/replay", json={"status": "dead_letter"}, headers=auth_header)

    assert 409 == one.status and "never replayed" in (await one.json())["error"]
    for resp in (by_id, by_status):
        body = await resp.json()
        assert (200, 0, 1) == (resp.status, body["replayed"], body["refused_tool_calls"]), body
    await settle(broker)
    assert 0 == await pool.fetchval("SELECT count(*) FROM appointments")
    assert "dead_letter" == await pool.fetchval("SELECT status FROM webhook_delivery_log WHERE id = $1", delivery_id)


def _many_calls(n: int, transcript_bytes: int) -> dict:
    items = [
        {"id": f"t-{n}-{i}", "type": "function", "function": {"name": "lookUp", "arguments": {"q": i}}}
        for i in range(n)
    ]
    return {
        "message": {
            "type": "tool-calls",
            "timestamp": 1,
            "call": {"id": f"c-many-{n}"},
            "toolCallList": items,
            "artifact": {"transcript": "x" * transcript_bytes},
        }
    }


async def test_storage_is_linear_in_the_message_and_tool_calls_are_capped(client, settings, pool):
    """The message is stored once; each tool call's row holds only its own part (same size for 1 or 32 calls, with a
    20 KB transcript); 33 tool calls are refused with 413 and nothing stored."""
    sizes = {}
    for n in (1, 32):
        resp = await post(client, settings, _many_calls(n, 20_000))
        assert 200 == resp.status and n == len((await resp.json())["results"])
        sizes[n] = await pool.fetchrow(
            "SELECT max(octet_length(payload::text)) FILTER (WHERE event_id LIKE 'tool-call:%') AS per_call,"
            "       count(*) FILTER (WHERE event_id LIKE 'tool-calls:message:%') AS messages,"
            "       sum(octet_length(payload::text)) AS total"
            "  FROM webhook_delivery_log WHERE payload->'call'->>'id' = $1",
            f"c-many-{n}",
        )
    over = await post(client, settings, _many_calls(33, 10))

    assert 1 == sizes[1]["messages"] == sizes[32]["messages"]
    assert abs(sizes[1]["per_call"] - sizes[32]["per_call"]) <= 8  # only the ids' lengths differ
    assert sizes[32]["per_call"] < 400
    assert sizes[32]["total"] < 20_000 + 32 * 400 + 32 * 120  # the message once, then each call's own part
    assert 413 == over.status
    assert "33 tool calls; at most 32" in (await over.json())["error"]
    assert 0 == await pool.fetchval(
        "SELECT count(*) FROM webhook_delivery_log WHERE event_id LIKE 't-33-%' OR payload->'call'->>'id' = 'c-many-33'"
    )


async def test_an_async_tool_goes_to_a_worker_and_can_be_replayed(client, settings, pool):
    """A tool defined async: true is answered at once, processed by the worker, and is not a synchronous call."""
    body = tool_call("t-async", "lookUp", {"q": 1})
    body["message"]["toolWithToolCallList"] = [
        {"type": "function", "async": True, "function": {"name": "lookUp"}, "toolCall": {"id": "t-async"}}
    ]

    resp = await post(client, settings, body)

    assert {"toolCallId": "t-async", "name": "lookUp", "result": "accepted"} == (await resp.json())["results"][0]
    await wait_until(
        lambda: pool.fetchval(
            "SELECT status = 'completed' AND answer_by IS NULL FROM webhook_delivery_log WHERE event_id = 'tool-call:t-async'"
        )
    )


def _signed_request(url: str, body: dict) -> dict:
    raw = json.dumps(body).encode()
    headers = signed_headers(SIGNER, raw)
    req = urllib.request.Request(url, data=raw, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return {"status": resp.status, "body": json.loads(resp.read())}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode()}
    except OSError as exc:
        return {"status": None, "error": str(exc)}


def _booking_stuck_behind_a_lock(env: dict[str, str], org_id: str, tool_call_id: str) -> tuple[Any, Any, list]:
    """Hold a slot's calendar locks, send its booking from a thread, and wait until the booking is running.

    Returns:
        ``(release, caller, answers)``: ``release()`` rolls the lock holder back (or ``terminate=True``
        drops it), ``caller`` the thread, ``answers`` what it heard (filled when it returns).
    """
    day = business_day()
    loop = asyncio.new_event_loop()
    holder = loop.run_until_complete(_hold_calendar(env["DATABASE_URL"], org_id, day, "10:00"))
    answers: list[dict] = []
    body = tool_call(tool_call_id, "bookClinicAppointment", book_args(day, "10:00"))
    caller = threading.Thread(
        target=lambda: answers.append(_signed_request(f"http://127.0.0.1:{env['PORT']}/webhooks/vapi", body))
    )
    caller.start()
    wait_sql(env, f"SELECT status = 'processing' FROM webhook_delivery_log WHERE event_id = 'tool-call:{tool_call_id}'")

    def release(*, terminate: bool = False) -> None:
        if terminate:
            holder.terminate()
        else:
            loop.run_until_complete(holder.execute("ROLLBACK"))
            loop.run_until_complete(holder.close())
        loop.close()

    return release, caller, answers


def _org(env: dict[str, str]) -> str:
    org = cli(
        env,
        "orgs",
        "create",
        "--name",
        "Deadline clinic",
        "--timezone",
        "Europe/London",
        "--region",
        "GB",
        "--assistant-id",
        "asst-test",
    )
    assert 0 == org.returncode, org.stderr
    return org.stdout.strip()


@pytest.mark.slow
def test_web_process_killed_while_a_booking_waits_never_books(env, tmp_path):
    """SIGKILL the web process while its booking waits on a calendar lock: after the lock is released nothing is
    booked, and once the caller's deadline passes the row is missed (the sweeper marks it, no worker runs it)."""
    env = {**env, "TOOL_CALL_TIMEOUT_S": "3", "SWEEP_INTERVAL_S": "0.3"}
    org_id = _org(env)
    env["VAPI_DEFAULT_ORG_ID"] = org_id
    web = start("serve", env, tmp_path / "web.log")
    others = [start(cmd, env, tmp_path / f"{cmd}.log") for cmd in ("worker", "scheduler")]
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        release, caller, answers = _booking_stuck_behind_a_lock(env, org_id, "t-kill")
        stop(web, signal.SIGKILL)
        release()
        caller.join(timeout=30)
        wait_sql(env, "SELECT status = 'missed' FROM webhook_delivery_log WHERE event_id = 'tool-call:t-kill'")
        wait_sql(env, NOTHING_LEFT_TO_RUN)  # and the row is terminal: no claim can take it
    finally:
        stop(web, signal.SIGKILL)
        for proc in others:
            stop(proc)
    assert answers and answers[0]["status"] is None  # the connection died with the process
    assert 0 == sql(env, "SELECT count(*) FROM appointments")
    assert 1 == sql(env, "SELECT attempts FROM webhook_delivery_log WHERE event_id = 'tool-call:t-kill'")


@pytest.mark.slow
def test_postgres_stopped_during_a_booking_never_books_after_it_returns(env, private_postgres, tmp_path):
    """PostgreSQL stops while a booking waits on a lock: the caller hears 503 or the call-back line; after PostgreSQL
    is back, workers and the sweeper run and nothing is booked; the row ends missed."""
    env = {**env, "DATABASE_URL": str(private_postgres["url"]), "TOOL_CALL_TIMEOUT_S": "3", "SWEEP_INTERVAL_S": "0.3"}
    assert 0 == cli(env, "migrate").returncode
    org_id = _org(env)
    env["VAPI_DEFAULT_ORG_ID"] = org_id
    procs = [start(cmd, env, tmp_path / f"{cmd}.log") for cmd in ("serve", "worker", "scheduler")]
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        release, caller, answers = _booking_stuck_behind_a_lock(env, org_id, "t-pg")
        private_postgres["down"]()
        caller.join(timeout=30)
        release(terminate=True)
        private_postgres["up"]()
        wait_sql(env, "SELECT status = 'missed' FROM webhook_delivery_log WHERE event_id = 'tool-call:t-pg'")
        wait_sql(env, NOTHING_LEFT_TO_RUN)
    finally:
        for proc in procs:
            stop(proc)
    answer = answers[0]
    assert answer["status"] == 503 or MISSED_REPLY == answer["body"]["results"][0]["error"], answer
    assert 0 == sql(env, "SELECT count(*) FROM appointments")
