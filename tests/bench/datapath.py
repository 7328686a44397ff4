"""The data path of one version of the service, measured the same way for each (``make bench`` runs two: this
checkout and a baseline git ref, interleaved, so every ratio compares numbers of one run on one machine).

A version is a source tree: this checkout, or a ``git worktree`` of the baseline ref put first on
``PYTHONPATH`` and made the working directory of its processes (the installed ``vapi-ingest`` script then
imports that tree's packages and migrates with its migrations; ``dramatiq`` imports from its working
directory). Everything the version does goes through its own processes and its own CLI;
the driver only sends HTTP, reads SQL and counts.

Measures (each in a fresh database):

* ingest at saturation (wrk) with 1 and with 2 web processes, workers stopped, then the drain of what
  was stored by 2 worker processes (a backlog as the real receiver sends it);
* accept latency at 1,000 requests/s offered;
* freshness: receipt-to-completed p99 with the web process and 2 worker processes under a sustained
  1,000 deliveries/s, and what those deliveries cost PostgreSQL (WAL bytes, row versions, commits);
* replay of 10,000 dead letters to completed, and a quiet clinic's live queue wait idle, during another
  clinic's burst of 5,000 reports and during a replay of its 10,000 dead letters (:mod:`tests.bench.fairness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

from tests.bench import fairness
from tests.bench.loads import SECRET, open_loop, wrk
from tests.bench.processes import children, free_port, peak_rss_mb, start, stop, wait_http

BIN = Path(sys.executable).with_name("vapi-ingest")
ADMIN_DSN = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
DEAD_LETTERS = 10_000


async def sql(dsn: str, query: str, *args: object) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def version_env(dsn: str, port: int, source: Path | None, **extra: str) -> dict[str, str]:
    """The environment a version's processes run with (2 worker processes, JSON logs)."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": REDIS_URL,
        "VAPI_WEBHOOK_SECRETS": SECRET,
        # The requests are signed once, before the first run; the last run comes minutes later.
        "VAPI_HMAC_TOLERANCE_S": "86400",
        "PORT": str(port),
        "WORKER_METRICS_PORT": str(free_port()),
        "SCHEDULER_METRICS_PORT": str(free_port()),
        "WORKER_PROCESSES": "2",
        "LOG_FORMAT": "json",
        "DB_POOL_MAX_SIZE": "20",
        **extra,
    }
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


async def fresh_database(source: Path | None) -> tuple[str, str, str]:
    """A new database migrated by the version itself, with the bench clinic (assistant ``asst-bench``).

    Returns:
        ``(name, dsn, org_id)``.
    """

    name = f"vapi_bench_{uuid.uuid4().hex[:8]}"
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path="/" + name))
    await sql(ADMIN_DSN, f'CREATE DATABASE "{name}"')
    env = version_env(dsn, free_port(), source)
    subprocess.run([str(BIN), "migrate"], env=env, check=True, capture_output=True)
    org = subprocess.run(
        [str(BIN), "orgs", "create", "--name", "Bench clinic", "--assistant-id", "asst-bench"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    redis.Redis.from_url(REDIS_URL).flushdb()
    return name, dsn, org


async def drop_database(name: str) -> None:
    await sql(ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def wait_completed(dsn: str, n: int, *, where: str = "true", timeout_s: float = 900) -> float:
    """Seconds until ``n`` deliveries matching ``where`` are completed."""
    conn = await asyncpg.connect(dsn)
    started = time.monotonic()
    try:
        while (
            await conn.fetchval(f"SELECT count(*) FROM webhook_delivery_log WHERE status = 'completed' AND {where}") < n
        ):
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"not all {n} deliveries completed in {timeout_s} s")
            await asyncio.sleep(0.02)
        return time.monotonic() - started
    finally:
        await conn.close()


async def pg_counters(dsn: str) -> dict[str, float]:
    """Cluster WAL bytes, this database's commits, and row versions written (inserted, updated, deleted)."""
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "wal_bytes": float(await conn.fetchval("SELECT wal_bytes FROM pg_stat_wal")),
            "commits": float(
                await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            ),
            "row_versions": float(
                await conn.fetchval("SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables")
            ),
            "log_row_versions": float(
                await conn.fetchval(
                    "SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relname = 'webhook_delivery_log'"
                )
            ),
            "log_hot_updates": float(
                await conn.fetchval(
                    "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'webhook_delivery_log'"
                )
            ),
            "log_indexes": float(
                await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'webhook_delivery_log'")
            ),
        }
    finally:
        await conn.close()


@dataclass
class Service:
    """One version's running service in a fresh database (:func:`serving`)."""

    source: Path | None
    dsn: str
    org_id: str
    port: int
    env: dict[str, str]
    tmp: Path
    tag: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop_all(self) -> None:
        """Stop every process of the service, the last started first."""
        while self.procs:
            stop(self.procs.pop())

    def start_workers(self) -> subprocess.Popen[bytes]:
        """``vapi-ingest worker`` (2 processes), stopped with the service."""
        proc = start([str(BIN), "worker"], self.env, self.tmp / f"{self.tag}-worker.log", cwd=self.source)
        self.procs.append(proc)
        return proc


@contextlib.asynccontextmanager
async def serving(source: Path | None, tmp: Path, tag: str, *, web: int = 1) -> AsyncIterator[Service]:
    """A fresh database and ``vapi-ingest serve`` (``web`` processes) of a version, ready; on exit every process
    it started is stopped (one left running would take the next phase's messages) and the database dropped."""
    name, dsn, org = await fresh_database(source)
    port = free_port()
    env = version_env(dsn, port, source, WEB_PROCESSES=str(web))
    service = Service(source, dsn, org, port, env, tmp, tag)
    service.procs.append(start([str(BIN), "serve"], env, tmp / f"{tag}-web.log", cwd=source))
    try:
        wait_http(port, "/readyz")
        yield service
    finally:
        service.stop_all()
        await drop_database(name)


async def ingest_then_drain(source: Path | None, requests_file: Path, seconds: int, tmp: Path, web: int) -> dict:
    """Ingest at saturation with ``web`` web processes and no workers, then drain the backlog with 2 workers."""
    out: dict = {}
    async with serving(source, tmp, f"ingest{web}", web=web) as service:
        result = wrk(service.port, requests_file, seconds=seconds)
        stored = int(await sql(service.dsn, "SELECT count(*) FROM webhook_delivery_log"))
        result["accepted_per_s"] = stored / result["seconds"]
        web_pid = service.procs[0].pid
        result["rss_mb"] = [round(peak_rss_mb(p), 1) for p in children(web_pid) or [web_pid]]
        out["ingest"] = result
        if web == 1:
            stop(service.procs.pop())
            worker = service.start_workers()
            drain_s = await wait_completed(service.dsn, stored)
            out["drain"] = {"deliveries": stored, "seconds": round(drain_s, 2), "per_s": round(stored / drain_s)}
            out["worker_rss_mb"] = [round(peak_rss_mb(p), 1) for p in children(worker.pid)]
    return out


async def fresh_and_costly(source: Path | None, seconds: int, tmp: Path) -> dict:
    """Accept latency at 1,000 requests/s offered (web alone, then with 2 workers draining as it ingests);
    receipt-to-completed and PostgreSQL's cost per delivery under the second."""
    async with serving(source, tmp, "fresh") as service:
        port, dsn = service.port, service.dsn
        # The web process alone first (the accept target), then with the workers draining as it ingests.
        alone = await open_loop(port, 1000, seconds)
        await sql(dsn, "TRUNCATE webhook_delivery_log CASCADE")
        redis.Redis.from_url(REDIS_URL).flushdb()
        service.start_workers()
        await asyncio.sleep(3)  # workers up and connected
        await asyncio.sleep(11)  # idle connections report their statistics within 10 s: the first phase's are in
        before = await pg_counters(dsn)
        fixed = await open_loop(port, 1000, seconds)
        n = int(await sql(dsn, "SELECT count(*) FROM webhook_delivery_log"))
        await wait_completed(dsn, n, timeout_s=600)
        # An idle connection keeps its statistics for up to 10 s; one that closes reports them.
        service.stop_all()
        await asyncio.sleep(1.0)
        after = await pg_counters(dsn)
        fresh = await asyncpg.connect(dsn)
        try:
            row = await fresh.fetchrow(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99, max(ms) AS worst"
                " FROM (SELECT extract(epoch FROM completed_at - received_at) * 1000 AS ms FROM webhook_delivery_log) t"
            )
        finally:
            await fresh.close()
    assert row is not None  # an aggregate always returns one row
    per = {
        k: round((after[k] - before[k]) / n, 2) for k in ("wal_bytes", "commits", "row_versions", "log_row_versions")
    }
    per["log_indexes"] = after["log_indexes"]
    per["log_hot_share"] = round(
        (after["log_hot_updates"] - before["log_hot_updates"])
        / max(1.0, (after["log_row_versions"] - before["log_row_versions"])),
        3,
    )
    return {
        "fixed_load": alone,
        "fixed_load_with_workers": fixed,
        "freshness_ms": {
            "deliveries": n,
            "p50": round(row["p50"], 1),
            "p99": round(row["p99"], 1),
            "max": round(row["worst"], 1),
        },
        "pg_per_delivery": per,
    }


async def dead_letters(dsn: str, org_id: str, n: int) -> None:
    """``n`` dead letters (4/5 status updates, 1/5 end-of-call reports) written straight into the log."""
    import json
    import random

    from tests.bench.loads import realistic_body

    rng = random.Random(3)
    rows = []
    for i in range(n):
        message = json.loads(realistic_body(i, rng))["message"]
        suffix = ":in-progress" if message["type"] == "status-update" else ""
        rows.append(
            (
                uuid.UUID(org_id),
                message["type"],
                f"{message['type']}:{message['call']['id']}{suffix}",
                json.dumps(message),
            )
        )
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, attempts, error_message)"
            " VALUES ($1, $2, $3, $4::jsonb, 'dead_letter', 5, 'boom')",
            rows,
        )
    finally:
        await conn.close()


async def replays(source: Path | None, tmp: Path) -> dict:
    """10,000 dead letters replayed to completed (CLI), then live queue wait idle and during such a replay."""
    async with serving(source, tmp, "replay") as service:
        service.start_workers()
        await asyncio.sleep(3)
        dsn, org = service.dsn, service.org_id
        await dead_letters(dsn, org, DEAD_LETTERS)
        started = time.monotonic()
        subprocess.run(
            [str(BIN), "deliveries", "replay", "--status", "dead_letter", "--yes"],
            env=service.env,
            check=True,
            capture_output=True,
        )
        await wait_completed(dsn, DEAD_LETTERS)
        replay_s = round(time.monotonic() - started, 2)
        await sql(dsn, "TRUNCATE webhook_delivery_log CASCADE")

        async def restart_workers(between) -> None:
            stop(service.procs.pop())  # the workers, started last
            await between()
            service.start_workers()

        between = await fairness.measure(
            service.port,
            dsn,
            service.env,
            lambda flood_org: dead_letters(dsn, flood_org, DEAD_LETTERS),
            restart_workers,
        )
    return {"replay_10k_s": replay_s, "fairness": between}


async def measure(source: Path | None, requests_file: Path, seconds: int, tmp: Path) -> dict:
    """Every data-path measure of one version (``source``: its tree, or None for this checkout)."""
    one = await ingest_then_drain(source, requests_file, seconds, tmp, web=1)
    two = await ingest_then_drain(source, requests_file, seconds, tmp, web=2)
    return {
        "ingest": one["ingest"],
        "ingest_2": two["ingest"],
        "drain": one["drain"],
        "worker_rss_mb": one["worker_rss_mb"],
        **await fresh_and_costly(source, seconds, tmp),
        **await replays(source, tmp),
    }
