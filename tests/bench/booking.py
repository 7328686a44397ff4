"""Booking latency benchmark: ``make bench-booking`` (a report, not a test).

Prints p50/p99 of ``book_appointment_atomic`` and of the full
``bookClinicAppointment`` tool handler (normalisation, tenant scope, SQL,
reply) at 1, 10 and 50 concurrent callers on different slots, and for a
same-slot storm, beside a plain ``SELECT 1`` round trip measured in the same
run on the same pool. Uses a throwaway database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from db import orgs
from db.migrate import migrate
from db.pool import create_pool
from workers.encryption import Keyring
from workers.handlers.tools import handle_tool_call
from workers.messages import ToolInvocation, tool_call_key
from workers.parsing import stored

ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _measure(concurrency: int, total: int, op: Callable[[int], Awaitable[object]]) -> list[float]:
    samples: list[float] = []
    counter = iter(range(total))

    async def caller() -> None:
        for i in counter:
            started = time.perf_counter()
            await op(i)
            samples.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return samples


def _row(label: str, samples: list[float], note: str = "") -> str:
    return f"| {label} | {len(samples)} | {_pct(samples, 0.5):.2f} | {_pct(samples, 0.99):.2f} | {note} |"


async def run(total: int) -> None:
    name = f"vapi_bench_{uuid.uuid4().hex[:8]}"
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path="/" + name))
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=50, max_size=50)
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=400)
    try:
        org_id = await orgs.create_org(pool, name="Bench clinic", timezone="UTC", region="GB")
        tool_org = await orgs.create_org(pool, name="Bench tool clinic", timezone="UTC", region="GB")
        other_orgs = [await orgs.create_org(pool, name=f"Bench {i}", timezone="UTC", region="GB") for i in range(50)]
        await orgs.create_org(pool, name="warm-up")
        slot = iter(range(10**9))

        async def select_1(_: int) -> None:
            await pool.fetchval("SELECT 1")

        def sql_booking(org_for: Callable[[int], uuid.UUID]) -> Callable[[int], Awaitable[object]]:
            async def op(i: int) -> object:
                start = base + timedelta(minutes=30 * next(slot))
                return await pool.fetchval(
                    "SELECT book_appointment_atomic($1, 'Jane Doe', NULL, $2, 'cleaning', $3, 30)",
                    org_for(i),
                    f"+4420{i % 10**7:07d}",
                    start,
                )

            return op

        tool_replies: list[dict[str, str]] = []
        tool_slot = iter(range(10**9))
        monday = (base + timedelta(days=(7 - base.weekday()) % 7)).replace(hour=9)

        async def tool_booking(i: int) -> object:
            # Business hours are checked in the tool: 16 half-hour slots on each weekday from 09:00.
            n = next(tool_slot)
            start = monday + timedelta(days=7 * (n // 80) + (n // 16) % 5, minutes=30 * (n % 16))
            args = {
                "name": "jane doe",
                "phone": f"+44 20 7{n % 10**7:07d}",
                "serviceType": "cleaning",
                "scheduledAt": start.isoformat(),
            }
            invocation = ToolInvocation(f"t-{i}", "bookClinicAppointment", args)
            message = {
                "type": "tool-calls",
                "toolCallList": [
                    {"id": invocation.tool_call_id, "function": {"name": invocation.name, "arguments": args}}
                ],
            }
            async with pool.acquire() as conn, conn.transaction():
                answered = await handle_tool_call(
                    conn, tool_org, stored(message, "tool-calls"), tool_call_key(f"t-{i}"), Keyring()
                )
            reply = answered.reply
            tool_replies.append(reply)
            return reply

        storm_start = base - timedelta(days=10)
        storm_results: list[object] = []

        async def storm(i: int) -> None:
            storm_results.append(
                await pool.fetchval(
                    "SELECT book_appointment_atomic($1, 'Jane Doe', NULL, $2, 'cleaning', $3, 30)",
                    org_id,
                    f"+4420{i:07d}",
                    storm_start,
                )
            )

        await _measure(10, 200, select_1)  # warm the pool and plans
        rows = ["| operation | samples | p50 ms | p99 ms | note |", "|---|---|---|---|---|"]
        rows.append(_row("SELECT 1 (baseline), 50 callers", await _measure(50, total, select_1)))
        for c in (1, 10, 50):
            rows.append(
                _row(
                    f"book_appointment_atomic, {c} caller(s), one org",
                    await _measure(c, total, sql_booking(lambda i: org_id)),
                )
            )
        rows.append(
            _row(
                "book_appointment_atomic, 50 callers, 50 orgs",
                await _measure(50, total, sql_booking(lambda i: other_orgs[i % 50])),
            )
        )
        for c in (1, 10, 50):
            tool_replies.clear()
            samples = await _measure(c, min(total, 400), tool_booking)
            ok = sum(1 for r in tool_replies if r.get("result", "").startswith("Booked"))
            rows.append(_row(f"bookClinicAppointment tool, {c} caller(s), one org", samples, f"{ok} booked"))
        storm_samples = await _measure(50, 500, storm)
        booked = sum(1 for r in storm_results if isinstance(r, dict) and r.get("success"))
        rows.append(
            _row("same-slot storm, 50 callers", storm_samples, f"{booked} booked, {500 - booked} SLOT_UNAVAILABLE")
        )
        server = await pool.fetchval("SHOW server_version")
        print(f"Booking latency ({os.cpu_count()} cores, PostgreSQL {server}, pool of 50, {total} samples per row)\n")
        print("\n".join(rows))
    finally:
        await pool.close()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    """Entry point: ``python -m tests.bench.booking [--samples N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="bookings per row (default 1000)")
    asyncio.run(run(parser.parse_args().samples))


if __name__ == "__main__":
    main()
