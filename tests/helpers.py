"""Helpers shared by the test modules: constants, one signer, one metrics reader, message builders, binaries.

Test modules import from here (and fixtures come from conftest.py); no test
module imports another.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from db.migrate import migrate
from ingest.settings import Settings
from ingest.webhook import auth

ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "vapi" / "payloads"
SECRET = "test-secret-1"
#: Signs like Vapi with :data:`SECRET` (HMAC, the default scheme), for tests without a Settings of their own.
SIGNER = Settings(webhook_secrets=(SECRET.encode(),))
LONDON = ZoneInfo("Europe/London")


def unavailable(what: str) -> None:
    """Skip locally, fail in CI (``CI`` set): a missing service must never pass silently there."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI and cannot be reached")
    pytest.skip(f"{what} is not reachable")


def signed_headers(settings: Settings, body: bytes, **extra: str) -> dict[str, str]:
    """Headers Vapi would send for ``body`` under ``settings``."""
    return {"Content-Type": "application/json", **auth.sign(settings, body), **extra}


async def post(client: Any, settings: Settings, payload: dict[str, Any] | bytes, **headers: str) -> Any:
    """POST a signed body to /webhooks/vapi."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post("/webhooks/vapi", data=body, headers=signed_headers(settings, body, **headers))


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``, from a Prometheus exposition.

    ``name`` is the sample's name (``vapi_webhooks_received_total``, ``vapi_deliveries``); 0 when absent.
    """
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def status_update(call_id: str, status: str, **extra: Any) -> dict[str, Any]:
    """A minimal status-update body of our own."""
    call = {"id": call_id, "type": "inboundPhoneCall"}
    return {"message": {"type": "status-update", "status": status, "timestamp": 1727030665008, "call": call, **extra}}


def business_day(weeks_ahead: int = 3) -> date:
    """A Monday some weeks ahead, in the org's zone."""
    today = datetime.now(LONDON).date()
    return today + timedelta(days=(7 - today.weekday()) % 7 + 7 * weeks_ahead)


def tool_call(
    tool_call_id: str, name: str, arguments: Any, *, flattened: bool = False, customer: str | None = None
) -> dict[str, Any]:
    """A tool-calls message in the real shape (function.arguments) or the documented flattened one."""
    item = (
        {"id": tool_call_id, "name": name, "parameters": arguments}
        if flattened
        else {"id": tool_call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    )
    call: dict[str, Any] = {"id": "call-booking", "assistantId": "asst-test"}
    if customer:
        call["customer"] = {"number": customer}
    return {"message": {"type": "tool-calls", "timestamp": 1763784256708, "call": call, "toolCallList": [item]}}


def book_args(day: date, hhmm: str, **extra: Any) -> dict[str, Any]:
    """bookClinicAppointment arguments for ``day`` at ``hhmm`` (local time), with any ``extra``."""
    args = {"name": "jane doe", "phone": "020 7183 8750", "serviceType": "cleaning", "scheduledAt": f"{day}T{hhmm}"}
    args.update(extra)
    return args


def system_tool(name: str) -> str:
    """The path of a system binary the test needs (e.g. Debian's ``prometheus``): skip locally, fail in CI."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} (.ci/run installs it)")
    assert path is not None
    return path


def dsn_for(database: str) -> str:
    """The admin DSN pointed at another database."""
    return urlunsplit(urlsplit(ADMIN_DSN)._replace(path="/" + database))


async def admin_sql(sql: str) -> None:
    """Run one statement on the admin database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def database_at(version: str) -> AsyncIterator[str]:
    """A fresh database migrated up to ``version`` only (for migration tests); yields its DSN, drops it after."""
    name = f"vapi_mig_{uuid.uuid4().hex[:12]}"
    try:
        await migrate(dsn_for(name), target=version)
        yield dsn_for(name)
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(db_dsn: str, **overrides: Any) -> Settings:
    """Test settings: HMAC with :data:`SECRET`, fast retries."""
    values: dict[str, Any] = {
        "database_url": db_dsn,
        "redis_url": REDIS_URL,
        "webhook_secrets": (SECRET.encode(),),
        "retry_max_attempts": 3,
        "retry_min_backoff_ms": 50,
        "retry_max_backoff_ms": 200,
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(**values)


async def wait_until(
    predicate: Callable[[], Any], *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "condition"
) -> Any:
    """Await ``predicate()`` (sync or async) until truthy and return its value; fail after ``timeout_s``.
    The one way tests wait on state; :func:`wait_until_sync` is its twin for code without an event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


def wait_until_sync(
    predicate: Callable[[], Any], *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "condition"
) -> Any:
    """:func:`wait_until` for tests that drive processes without an event loop: call ``predicate()`` until
    truthy and return its value; an ``OSError`` (a port not open yet) counts as not yet. Fail after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        time.sleep(interval_s)


async def received(client: Any, type_label: str, outcome: str) -> float:
    """vapi_webhooks_received_total for one type and outcome now (metrics are process-wide: compare before/after)."""
    text = await (await client.get("/metrics")).text()
    return metric(text, "vapi_webhooks_received_total", type=type_label, outcome=outcome)


def found(pattern: str, text: str) -> str:
    """The first group of ``pattern`` in ``text``; fails the test, showing the text, when it is not there."""
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in {text[:2000]!r}"
    return match.group(1)


def corpus_files() -> list[Path]:
    """The shared payload corpus; skips (with the reason) when ``../shared`` is absent."""
    if not CORPUS_DIR.is_dir():
        unavailable(f"the payload corpus at {CORPUS_DIR} (../shared/vapi/payloads)")
    return sorted(CORPUS_DIR.glob("*.json"))


async def settle(broker: Any, *, timeout_s: float = 15.0) -> None:
    """Wait until every delivery queue (each lane's) holds no message, queued or unacked (Dramatiq's ``join``).

    A negative assertion ("nothing more happened") made after this checks
    state, not the clock: any work that was (wrongly) enqueued has run.
    """
    from workers.broker import QUEUES

    for queue in QUEUES:
        await asyncio.to_thread(broker.join, queue, timeout=int(timeout_s * 1000))


#: True once no delivery is left that any worker could claim (pending, processing or failed): a stray
#: message for a terminal row is skipped by the claim, so nothing more can happen to these rows.
NOTHING_LEFT_TO_RUN = (
    "SELECT count(*) = 0 FROM webhook_delivery_log WHERE status IN ('pending', 'processing', 'failed')"
)


class Explaining:
    """A connection stand-in that EXPLAINs each query it is given, then runs it on the real one.

    ``plans`` holds ``(query, plan)``: the plan's text, or with ``analyze`` the root node of
    ``EXPLAIN (ANALYZE, FORMAT JSON)`` as a dict (actual rows and filters counted).
    """

    def __init__(self, conn: Any, *, analyze: bool = False) -> None:
        self.conn, self.analyze = conn, analyze
        self.plans: list[tuple[str, Any]] = []

    async def _explain(self, query: str, args: tuple) -> None:
        if self.analyze:
            found = await self.conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args)
            # The service's pool decodes json itself; a bare connection gives text.
            self.plans.append((query, (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]))
        else:
            rows = await self.conn.fetch("EXPLAIN " + query, *args)
            self.plans.append((query, "\n".join(r[0] for r in rows)))

    async def fetch(self, query: str, *args: Any) -> Any:
        await self._explain(query, args)
        return await self.conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        await self._explain(query, args)
        return await self.conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        await self._explain(query, args)
        return await self.conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> Any:
        """As the others; with ``analyze`` a write runs twice (EXPLAIN ANALYZE executes it): use it inside a
        transaction the test rolls back, or where running twice is harmless."""
        await self._explain(query, args)
        return await self.conn.execute(query, *args)


def log_reads(plan: dict) -> list[tuple[str, int]]:
    """``(node type, rows read)`` of each plan node that reads ``webhook_delivery_log``: the rows it
    returned plus those its filters and rechecks threw away, over all its loops."""
    found = []
    if plan.get("Relation Name") == "webhook_delivery_log":
        per_loop = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        per_loop += plan.get("Rows Removed by Index Recheck", 0)
        found.append((plan["Node Type"], round(per_loop * plan["Actual Loops"])))
    for child in plan.get("Plans", []):
        found += log_reads(child)
    return found


async def insert_delivery(conn: Any, **row: Any) -> Any:
    """Store one delivery as the receiver would (keyword arguments as :class:`db.deliveries.NewDelivery`; its
    ``facts`` read from the payload by the message model unless given); its id, or None when the key was
    already stored."""
    from db.deliveries import NewDelivery, insert_many
    from workers.parsing import stored

    row.setdefault("facts", stored(row["payload"], row["event_type"]).facts())
    return (await insert_many(conn, [NewDelivery(**row)]))[0]
