"""Faults: each test states what it breaks (a process, Redis, PostgreSQL, a poison message) and what must hold.

The invariant throughout: nothing acknowledged with a 2xx is lost, and
nothing is applied twice (hang counts and row counts are checked).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.helpers import SIGNER, post, settle, signed_headers, status_update, wait_until, wait_until_sync
from tests.procs import cli, free_port, running, sql, sql_script, start, stop, wait_for, wait_sql


def _hang(call_id: str, ts: int) -> dict:
    return {"message": {"type": "hang", "timestamp": ts, "call": {"id": call_id, "assistantId": "asst-proc"}}}


def _signed(body: dict) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, signed_headers(SIGNER, raw)


async def _stream(url: str, bodies: list[dict], *, concurrency: int = 8) -> list[int]:
    """POST every body (signed), return the statuses in order; a refused connection counts as 0."""
    statuses = [0] * len(bodies)
    queue = list(enumerate(bodies))

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            i, body = queue.pop(0)
            raw, headers = _signed(body)
            try:
                async with session.post(url, data=raw, headers=headers) as resp:
                    statuses[i] = resp.status
            except aiohttp.ClientError:
                statuses[i] = 0

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return statuses


@pytest.fixture
def org(env: dict[str, str]) -> dict[str, str]:
    """The test database gets an org that owns assistant asst-proc; env routes to it by default."""
    created = cli(env, "orgs", "create", "--name", "Fault clinic", "--assistant-id", "asst-proc")
    assert 0 == created.returncode, created.stderr
    env["VAPI_DEFAULT_ORG_ID"] = created.stdout.strip()
    return env


def test_sigkill_a_worker_mid_delivery_loses_nothing_and_applies_nothing_twice(org, tmp_path):
    """Kills: every worker process with SIGKILL while they hold in-flight deliveries (blocked in their handlers).

    Asserts: after a new worker starts, every accepted delivery ends completed (the expired leases
    bring them back), and every hang was counted exactly once.
    """
    env = {**org, "DELIVERY_LEASE_S": "2", "SWEEP_INTERVAL_S": "0.5", "WORKER_PROCESSES": "1", "WORKER_THREADS": "4"}
    web, scheduler = start("serve", env, tmp_path / "web.log"), start("scheduler", env, tmp_path / "scheduler.log")
    worker = start("worker", env, tmp_path / "worker.log")
    try:
        url = wait_for(f"http://127.0.0.1:{env['PORT']}/readyz") and f"http://127.0.0.1:{env['PORT']}/webhooks/vapi"
        # Hold the calls table so workers block inside their handler transactions.
        blocker = subprocess.Popen([sys.executable, "-c", _LOCK_CALLS, env["DATABASE_URL"]], stdout=subprocess.PIPE)
        assert blocker.stdout is not None and b"locked" in blocker.stdout.readline()
        statuses = asyncio.run(_stream(url, [_hang(f"c-k-{i}", 1_000 + i) for i in range(40)]))
        assert [200] * 40 == statuses
        wait_sql(env, "SELECT count(*) >= 1 FROM webhook_delivery_log WHERE status = 'processing'")
        stop(worker, signal.SIGKILL)
        blocker.kill()
        blocker.wait()
        worker = start("worker", env, tmp_path / "worker.log")
        wait_sql(env, "SELECT count(*) = 40 FROM webhook_delivery_log WHERE status = 'completed'", timeout_s=60)
    finally:
        for proc in (web, worker, scheduler):
            stop(proc)
    assert 40 == sql(env, "SELECT count(*) FROM calls")
    assert 40 == sql(env, "SELECT sum(hang_count) FROM calls")


def test_sigkill_a_worker_holding_whole_batches_loses_nothing_and_applies_nothing_twice(org, tmp_path):
    """Kills: the worker with SIGKILL while it holds batches of deliveries (messages of many deliveries, blocked in
    their handler transactions), 400 hangs sent by 64 concurrent clients.

    Asserts: batches formed (a message held several deliveries), every accepted delivery ends completed, each hang
    counted exactly once, and no delivery spent more than the one attempt the kill cost it (reclaimed deliveries
    run alone).
    """
    # 8 threads: the first few messages (batches of one, written while the service was idle) are held first.
    env = {**org, "DELIVERY_LEASE_S": "2", "SWEEP_INTERVAL_S": "0.5", "WORKER_PROCESSES": "1", "WORKER_THREADS": "8"}
    web, scheduler = start("serve", env, tmp_path / "web.log"), start("scheduler", env, tmp_path / "scheduler.log")
    worker = start("worker", env, tmp_path / "worker.log")
    try:
        url = wait_for(f"http://127.0.0.1:{env['PORT']}/readyz") and f"http://127.0.0.1:{env['PORT']}/webhooks/vapi"
        # Each group commit takes 0.2 s, so concurrent requests pile up into batches of many rows (messages
        # of many deliveries), as under load.
        sql_script(env, _SLOW_BATCHES)
        blocker = subprocess.Popen([sys.executable, "-c", _LOCK_CALLS, env["DATABASE_URL"]], stdout=subprocess.PIPE)
        assert blocker.stdout is not None and b"locked" in blocker.stdout.readline()
        bodies = [_hang(f"c-kb-{i}", 1_000 + i) for i in range(400)]
        assert [200] * 400 == asyncio.run(_stream(url, bodies, concurrency=64))
        wait_sql(
            env,
            "SELECT count(*) >= 1 FROM (SELECT job_id FROM webhook_delivery_log WHERE status = 'processing'"
            " GROUP BY job_id HAVING count(*) > 1) held",
        )
        stop(worker, signal.SIGKILL)
        blocker.kill()
        blocker.wait()
        worker = start("worker", env, tmp_path / "worker.log")
        wait_sql(env, "SELECT count(*) = 400 FROM webhook_delivery_log WHERE status = 'completed'", timeout_s=90)
    finally:
        for proc in (web, worker, scheduler):
            stop(proc)
    assert (400, 400) == (sql(env, "SELECT count(*) FROM calls"), sql(env, "SELECT sum(hang_count) FROM calls"))
    assert sql(env, "SELECT max(attempts) FROM webhook_delivery_log") <= 2


_SLOW_BATCHES = """
CREATE FUNCTION slow_batch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END $$;
CREATE TRIGGER slow_batch AFTER INSERT ON webhook_delivery_log FOR EACH STATEMENT EXECUTE FUNCTION slow_batch();
"""

_LOCK_CALLS = """
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    tr = conn.transaction(); await tr.start()
    await conn.execute("LOCK TABLE calls IN EXCLUSIVE MODE")
    print("locked", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A Redis server of this test's own, which it may stop and start again."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed for this test"
    port = free_port()
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    state: dict[str, object] = {"url": f"redis://127.0.0.1:{port}/0"}

    def up() -> None:
        state["proc"] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)

    def down() -> None:
        proc = state.pop("proc")
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(timeout=10)  # type: ignore[attr-defined]

    state.update(up=up, down=down)
    up()
    yield state
    if "proc" in state:
        down()


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    import socket

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until_sync(listening, timeout_s=timeout_s, what=f"a listener on {port}")


async def _until_inserting(dsn: str, timeout_s: float = 10.0) -> None:
    """Wait until an INSERT into the delivery log is sleeping in PostgreSQL (the slow_receive trigger)."""
    conn = await asyncpg.connect(dsn)
    try:
        await wait_until(
            lambda: conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                " AND query LIKE '%INSERT INTO webhook_delivery_log%'"
            ),
            timeout_s=timeout_s,
            interval_s=0.02,
            what="the slow request reaching PostgreSQL",
        )
    finally:
        await conn.close()


def test_redis_down_mid_stream_keeps_answering_and_loses_nothing(org, private_redis, tmp_path):
    """Kills: Redis, in the middle of a stream of requests; then starts it again (empty).

    Asserts: every request is answered 2xx, rows stay pending while Redis is away, and once it is
    back every delivery is processed, none lost.
    """
    env = {**org, "REDIS_URL": str(private_redis["url"]), "SWEEP_INTERVAL_S": "0.5", "DELIVERY_LEASE_S": "2"}
    with running(env, tmp_path) as url:
        first = asyncio.run(_stream(url, [_hang(f"c-r-{i}", 2_000 + i) for i in range(20)]))
        private_redis["down"]()
        during = asyncio.run(_stream(url, [_hang(f"c-r-{i}", 2_000 + i) for i in range(20, 60)]))
        pending_while_down = sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE status = 'pending'")
        private_redis["up"]()
        wait_sql(env, "SELECT count(*) = 60 FROM webhook_delivery_log WHERE status = 'completed'", timeout_s=60)
    assert [200] * 20 == first
    assert [200] * 40 == during
    assert pending_while_down >= 40
    assert (60, 60) == (sql(env, "SELECT count(*) FROM calls"), sql(env, "SELECT sum(hang_count) FROM calls"))


async def test_same_body_50_times_concurrently_is_one_row_one_effect(client, settings, pool, broker):
    """Sends: one hang body 50 times at once. Asserts: 50 answers 200, one row, hang counted once."""
    body = {"message": {"type": "hang", "timestamp": 1746364526623, "call": {"id": "c-50"}}}

    responses = await asyncio.gather(*(post(client, settings, body) for _ in range(50)))

    assert [200] * 50 == [r.status for r in responses]
    await wait_until(lambda: pool.fetchval("SELECT status = 'completed' FROM webhook_delivery_log"))
    assert 1 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log")
    await settle(broker)
    assert 1 == await pool.fetchval("SELECT hang_count FROM calls")


async def test_a_poison_delivery_dead_letters_while_others_flow(client, settings, pool):
    """Injects: a trigger that always raises for one call. Asserts: that delivery is dead-lettered after
    RETRY_MAX_ATTEMPTS with its final error, and the 30 others complete meanwhile."""
    await pool.execute("""
        CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.vapi_call_id = 'c-poison' THEN RAISE EXCEPTION 'poisoned call %', NEW.vapi_call_id; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON calls FOR EACH ROW EXECUTE FUNCTION poison();
    """)

    await post(client, settings, status_update("c-poison", "in-progress"))
    for i in range(30):
        await post(client, settings, status_update(f"c-ok-{i}", "in-progress"))

    await wait_until(
        lambda: pool.fetchval(
            "SELECT count(*) = 31 FROM webhook_delivery_log WHERE status IN ('completed', 'dead_letter')"
        )
    )
    poison = await pool.fetchrow(
        "SELECT status, attempts, error_message FROM webhook_delivery_log"
        " WHERE event_id = 'status-update:c-poison:in-progress'"
    )
    assert ("dead_letter", settings.retry_max_attempts) == (poison["status"], poison["attempts"])
    assert "poisoned call c-poison" in poison["error_message"]
    assert 30 == await pool.fetchval("SELECT count(*) FROM calls")


def test_sigterm_web_finishes_in_flight_and_worker_finishes_its_messages(org, tmp_path):
    """Sends SIGTERM to web and worker while a request and deliveries are in flight (slowed by pg_sleep
    triggers). Asserts: the in-flight request gets 200, the web port then refuses connections, and
    no delivery is left half-done ('processing'): each was finished or given back."""
    sql_script(
        org,
        """
        CREATE FUNCTION slow_call() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$;
        CREATE TRIGGER slow_call BEFORE INSERT OR UPDATE ON calls FOR EACH ROW EXECUTE FUNCTION slow_call();
        CREATE FUNCTION slow_receive() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.event_id LIKE '%c-slow%' THEN PERFORM pg_sleep(1.5); END IF; RETURN NEW; END $$;
        CREATE TRIGGER slow_receive BEFORE INSERT ON webhook_delivery_log
            FOR EACH ROW EXECUTE FUNCTION slow_receive();
    """,
    )
    env = {**org, "WORKER_PROCESSES": "1", "WORKER_THREADS": "4"}
    web, worker = start("serve", env, tmp_path / "web.log"), start("worker", env, tmp_path / "worker.log")
    url = f"http://127.0.0.1:{env['PORT']}/webhooks/vapi"
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        assert [200] * 4 == asyncio.run(_stream(url, [_hang(f"c-t-{i}", 3_000 + i) for i in range(4)]))
        wait_sql(env, "SELECT count(*) >= 1 FROM webhook_delivery_log WHERE status = 'processing'")

        async def in_flight_then_term() -> list[int]:
            slow = asyncio.ensure_future(_stream(url, [status_update("c-slow", "ringing")], concurrency=1))
            await _until_inserting(env["DATABASE_URL"])  # the request is in flight: its INSERT sleeps in the trigger
            os.killpg(web.pid, signal.SIGTERM)
            os.killpg(worker.pid, signal.SIGTERM)
            return await slow

        answered = asyncio.run(in_flight_then_term())
        web_code, worker_code = web.wait(timeout=30), worker.wait(timeout=60)
    finally:
        for proc in (web, worker):
            stop(proc)
    assert [200] == answered
    assert (0, 0) == (web_code, worker_code)
    assert [0] == asyncio.run(_stream(url, [_hang("c-after", 9)]))
    assert 0 == sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE status = 'processing'")
    completed = sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE status = 'completed' AND event_type = 'hang'")
    assert completed >= 1
    assert completed == sql(env, "SELECT coalesce(sum(hang_count), 0) FROM calls")


def test_postgres_restart_mid_stream_never_acknowledges_what_it_did_not_store(env, private_postgres, tmp_path):
    """Stops PostgreSQL in the middle of a stream and starts it again, without restarting our processes.

    Asserts: during the outage every answer is 503 (never a 2xx); afterwards the service answers 200
    again by itself, and every 2xx answered delivery is stored and completed.
    """
    env = {**env, "DATABASE_URL": str(private_postgres["url"]), "SWEEP_INTERVAL_S": "0.5", "DELIVERY_LEASE_S": "2"}
    assert 0 == cli(env, "migrate").returncode
    org = cli(env, "orgs", "create", "--name", "Outage clinic", "--assistant-id", "asst-proc")
    env["VAPI_DEFAULT_ORG_ID"] = org.stdout.strip()
    with running(env, tmp_path) as url:
        before = asyncio.run(_stream(url, [_hang(f"c-p-{i}", 4_000 + i) for i in range(20)]))
        private_postgres["down"]()
        during = asyncio.run(_stream(url, [_hang(f"c-p-{i}", 4_000 + i) for i in range(20, 40)]))
        private_postgres["up"]()
        wait_until_sync(
            lambda: asyncio.run(_stream(url, [_hang("c-p-probe", 5_000)])) == [200],
            timeout_s=20,
            interval_s=0.2,
            what="the receiver's recovery",
        )
        after = asyncio.run(_stream(url, [_hang(f"c-p-{i}", 4_000 + i) for i in range(40, 60)]))
        acknowledged = sum(1 for code in before + during + after if 200 <= code < 300) + 1
        wait_sql(
            env, f"SELECT count(*) = {acknowledged} FROM webhook_delivery_log WHERE status = 'completed'", timeout_s=60
        )
    assert [200] * 20 == before
    assert set(during) == {503}
    assert [200] * 20 == after
    assert acknowledged == sql(env, "SELECT sum(hang_count) FROM calls")


def _postgres_pids(url: str) -> list[int]:
    """The postmaster listening on ``url``'s port and every process it started (backends, writers)."""
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    found = subprocess.run(["pgrep", "-f", f"postgres .*-p {port} "], capture_output=True, text=True)
    postmaster = int(found.stdout.split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    return [postmaster, *(int(pid) for pid in children)]


def test_a_frozen_postgresql_gets_a_503_within_the_command_timeout(env, private_postgres, tmp_path):
    """PostgreSQL stopped by SIGSTOP (a hung disk, a paused VM): a request on an already open pooled
    connection is answered 503 within DB_COMMAND_TIMEOUT_S, not held while the server is frozen (it was
    held 25 s of a 25 s freeze, past Vapi's 20 s timeout); once the server runs again the service answers
    200 by itself, and nothing acknowledged is lost."""
    env = {**env, "DATABASE_URL": str(private_postgres["url"]), "DB_COMMAND_TIMEOUT_S": "1"}
    assert 0 == cli(env, "migrate").returncode
    env["VAPI_DEFAULT_ORG_ID"] = cli(env, "orgs", "create", "--name", "Frozen clinic").stdout.strip()
    with running(env, tmp_path) as url:
        before = asyncio.run(_stream(url, [_hang(f"c-z-{i}", 7_000 + i) for i in range(4)], concurrency=2))
        frozen = _postgres_pids(env["DATABASE_URL"])
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            during = asyncio.run(_stream(url, [_hang("c-z-frozen", 7_100)], concurrency=1))
            took_s = time.monotonic() - started
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        wait_until_sync(
            lambda: asyncio.run(_stream(url, [_hang("c-z-after", 7_200)])) == [200],
            timeout_s=20,
            interval_s=0.2,
            what="the receiver's recovery after the thaw",
        )
    assert [200] * 4 == before
    assert [503] == during and took_s < 4, (during, took_s)
    acknowledged = ["c-z-0", "c-z-1", "c-z-2", "c-z-3", "c-z-after"]
    stored = sql(env, f"SELECT count(*) FROM webhook_delivery_log WHERE vapi_call_id IN ({str(acknowledged)[1:-1]})")
    assert len(acknowledged) == stored  # the frozen request's row may exist too: it was answered 503, not 2xx
