"""The service benchmark: ``make bench`` (a report, not a test).

Measures in one run, on this machine, side by side with baselines:

1. Ingest at saturation (wrk, pre-signed unique status-update and
   end-of-call-report bodies of 1-20 KB) against ``vapi-ingest serve``, a bare
   aiohttp endpoint that only reads the body, and pgbench doing the same
   single-row ``INSERT ... ON CONFLICT DO NOTHING`` with 8 clients.
2. Accept latency at a fixed offered load (open loop, 1,000 requests/s).
3. Drain: 20,000 mixed deliveries processed by 2 worker processes.
4. Replay: 10,000 dead letters replayed to completed; then live queue wait
   p99 idle and during such a replay (``tests.bench.replay_isolation``).
5. Peak RSS of the web process and of each worker process.
6. Console pages at 1,000,000 deliveries, and ingest while an operator
   browses (``tests.bench.console``).
7. Booking latency (``tests.bench.booking``).

Writes ``tests/bench/results/<date>.json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

from db import orgs
from db.migrate import migrate
from tests.bench import console as console_bench
from tests.bench import replay_isolation
from tests.bench.loads import HERE, SECRET, open_loop, pgbench, realistic_body, write_requests, wrk
from tests.bench.processes import children, free_port, peak_rss_mb, start, stop, wait_http
from tests.bench.report import markdown
from workers.broker import build_broker, enqueue_many

BIN = Path(sys.executable).with_name("vapi-ingest")
ADMIN_DSN = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
#: Web processes for the service and for the bare baseline alike (one per core).
WEB_PROCESSES = os.cpu_count() or 1
#: Deliveries in the log while the console is measured (issue 11's size).
CONSOLE_ROWS = 1_000_000
TARGETS = {
    "ingest_vs_pgbench": 1.0,
    "ingest_vs_bare": 0.5,
    "p99_at_1000_ms": 25.0,
    "drain_per_s": 2000.0,
    "replay_10k_s": 10.0,
    "web_rss_mb": 150.0,
}


async def backlog(dsn: str, org_id: uuid.UUID, n: int, status: str) -> list[tuple[uuid.UUID, str]]:
    """Insert ``n`` mixed deliveries in ``status`` straight into the log; returns (id, message id) pairs."""
    conn = await asyncpg.connect(dsn)
    rng = random.Random(3)
    try:
        rows = []
        for i in range(n):
            message = json.loads(realistic_body(i, rng))["message"]
            key = f"{message['type']}:{message['call']['id']}" + (
                ":in-progress" if message["type"] == "status-update" else ""
            )
            rows.append((org_id, message["type"], key, json.dumps(message), str(uuid.uuid4()), status))
        await conn.executemany(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, job_id, status, attempts,"
            " error_message, enqueued_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6,"
            " CASE WHEN $6 = 'dead_letter' THEN 5 ELSE 0 END, CASE WHEN $6 = 'dead_letter' THEN 'boom' END, now())",
            rows,
        )
        return [(r["id"], r["job_id"]) for r in await conn.fetch("SELECT id, job_id FROM webhook_delivery_log")]
    finally:
        await conn.close()


async def wait_completed(dsn: str, n: int, timeout_s: float = 600) -> float:
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while await conn.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE status = 'completed'") < n:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"not all {n} deliveries completed in {timeout_s} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started
    finally:
        await conn.close()


async def noop_drain(env: dict[str, str], pairs: list[tuple[uuid.UUID, str]], tmp: Path) -> float:
    """Dramatiq alone: the same messages drained by a do-nothing async actor (2 processes); messages/s."""
    noop_broker = build_broker(REDIS_URL, namespace="noop")
    await enqueue_many(noop_broker, pairs)
    client = redis.Redis.from_url(REDIS_URL)
    workers = start(
        [
            str(Path(sys.executable).with_name("dramatiq")),
            "tests.bench.noop_worker:setup_broker",
            "--processes",
            "2",
            "--threads",
            "8",
            "--queues",
            "deliveries",
        ],
        {**env, "dramatiq_queue_prefetch": "64", "dramatiq_worker_timeout": "100"},
        tmp / "noop.log",
    )
    started = time.monotonic()
    while client.llen("noop:deliveries") or client.hlen("noop:deliveries.msgs"):
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    stop(workers)
    noop_broker.close()
    return round(len(pairs) / elapsed)


async def sql(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def scratch_database() -> tuple[str, str, uuid.UUID]:
    """A new migrated database with the bench clinic (assistant ``asst-bench``), and Redis emptied.

    Returns:
        ``(name, dsn, org_id)``; drop it with :func:`drop_database`.
    """
    name = f"vapi_bench_{uuid.uuid4().hex[:8]}"
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path="/" + name))
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    org_id = await orgs.create_org(conn, name="Bench clinic")
    await orgs.add_agent(conn, org_id, "asst-bench")
    await conn.close()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return name, dsn, org_id


async def drop_database(name: str) -> None:
    """Drop a :func:`scratch_database`."""
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def service_env(dsn: str, port: int, **extra: str) -> dict[str, str]:
    """The environment the bench runs ``vapi-ingest`` with (2 worker processes, JSON logs)."""
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": REDIS_URL,
        "VAPI_WEBHOOK_SECRETS": SECRET,
        "PORT": str(port),
        "WORKER_METRICS_PORT": str(free_port()),
        "WORKER_PROCESSES": "2",
        "LOG_FORMAT": "json",
        **extra,
    }


async def run(seconds: int, out_dir: Path) -> dict:
    name, dsn, org_id = await scratch_database()
    tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
    port = free_port()
    env = service_env(dsn, port, DB_POOL_MAX_SIZE="20", WEB_PROCESSES=str(WEB_PROCESSES))
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "postgres": await sql(dsn, "SHOW server_version"),
        "seconds_per_run": seconds,
        "web_processes": WEB_PROCESSES,
    }
    try:
        requests_file = tmp / "requests.bin"
        # Enough unique bodies that wrk never wraps around into duplicates.
        results["mean_body_bytes"] = round(write_requests(requests_file, 9_000 * seconds))

        web = start([str(BIN), "serve"], env, tmp / "web.log")
        wait_http(port, "/readyz")
        before = await sql(dsn, "SELECT count(*) FROM webhook_delivery_log")
        ingest = wrk(port, requests_file, seconds=seconds)
        stored = await sql(dsn, "SELECT count(*) FROM webhook_delivery_log") - before
        ingest["accepted_per_s"] = stored / ingest["seconds"]
        ingest["duplicates"] = max(
            0, ingest["requests"] - stored
        )  # rows of requests still in flight at the end count too
        results["ingest"] = ingest
        results["web_rss_mb"] = [round(peak_rss_mb(p), 1) for p in children(web.pid) or [web.pid]]
        fixed = await open_loop(port, 1000, seconds)
        results["fixed_load"] = fixed
        stop(web)

        bare_port = free_port()
        bare = start(
            [sys.executable, str(HERE / "bare_app.py"), str(bare_port), str(WEB_PROCESSES)], env, tmp / "bare.log"
        )
        time.sleep(1.0)  # the bare app has no health route; it starts in well under a second
        results["bare_aiohttp"] = wrk(bare_port, requests_file, seconds=seconds)
        stop(bare)

        results["pgbench_tps"] = pgbench(dsn, org_id, seconds=seconds, payload_bytes=int(results["mean_body_bytes"]))

        await sql(dsn, "TRUNCATE webhook_delivery_log CASCADE")
        redis.Redis.from_url(REDIS_URL).flushdb()
        pairs = await backlog(dsn, org_id, 20_000, "pending")
        broker = build_broker(REDIS_URL)
        await enqueue_many(broker, pairs)
        worker = start([str(BIN), "worker"], env, tmp / "worker.log")
        drain_s = await wait_completed(dsn, 20_000)
        wait_p99 = await sql(
            dsn,
            "SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " last_attempt_at - received_at)) FROM webhook_delivery_log",
        )
        results["drain"] = {
            "deliveries": 20_000,
            "seconds": round(drain_s, 2),
            "per_s": round(20_000 / drain_s),
            "queue_wait_p99_s": round(float(wait_p99), 2),
        }
        results["worker_rss_mb"] = [round(peak_rss_mb(p), 1) for p in children(worker.pid)]

        results["dramatiq_noop_per_s"] = await noop_drain(env, pairs, tmp)

        await sql(dsn, "TRUNCATE webhook_delivery_log CASCADE")
        await backlog(dsn, org_id, 10_000, "dead_letter")
        started = time.monotonic()
        subprocess.run(
            [str(BIN), "deliveries", "replay", "--status", "dead_letter", "--yes"],
            env=env,
            check=True,
            capture_output=True,
        )
        await wait_completed(dsn, 10_000)
        results["replay_10k_s"] = round(time.monotonic() - started, 2)

        await sql(dsn, "TRUNCATE webhook_delivery_log CASCADE")
        web = start([str(BIN), "serve"], env, tmp / "web2.log")
        wait_http(port, "/readyz")
        results["replay_isolation"] = await replay_isolation.measure(
            port, dsn, env, lambda: backlog(dsn, org_id, 10_000, "dead_letter")
        )
        stop(web)
        stop(worker)
        broker.close()

        await sql(dsn, "TRUNCATE webhook_delivery_log CASCADE")
        redis.Redis.from_url(REDIS_URL).flushdb()
        seeded = await console_bench.seed(dsn, CONSOLE_ROWS)
        web = start([str(BIN), "serve"], {**env, "ADMIN_TOKEN": console_bench.ADMIN_TOKEN}, tmp / "web3.log")
        wait_http(port, "/readyz")
        results["console"] = await console_bench.measure(
            port, web.pid, seeded, tmp, samples=100, seconds=max(seconds // 2, 1)
        )
        stop(web)
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
        await drop_database(name)
        shutil.rmtree(tmp, ignore_errors=True)
    booking = subprocess.run(
        [sys.executable, "-m", "tests.bench.booking", "--samples", "500"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parents[1],
    )
    results["booking_table"] = booking.stdout
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    (out_dir / f"{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = markdown(results)
    (out_dir / f"{stamp}.md").write_text(table + "\n")
    print(table)
    return results


def main() -> None:
    """Entry point: ``python -m tests.bench.service [--seconds N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each timed run (default 10)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where to write <date>.json and .md")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("pgbench") is None:
        sys.exit("make bench needs wrk and pgbench: apt-get install wrk postgresql-client")
    asyncio.run(run(args.seconds, args.out))


if __name__ == "__main__":
    main()
