"""The service benchmark: ``make bench`` (a report, not a test).

Measures in one run, on this machine, side by side with baselines:

1. Ingest at saturation (wrk, pre-signed unique status-update and
   end-of-call-report bodies of 1-20 KB) against ``vapi-ingest serve``, a bare
   aiohttp endpoint that only reads the body, and pgbench doing the same
   single-row ``INSERT ... ON CONFLICT DO NOTHING`` with 8 clients.
2. Accept latency at a fixed offered load (open loop, 1,000 requests/s).
3. Drain: 20,000 mixed deliveries processed by 2 worker processes.
4. Replay: 10,000 dead letters replayed to completed.
5. Peak RSS of the web process and of each worker process.
6. Booking latency (``tests.bench.booking``).

Writes ``tests/bench/results/<date>.json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import redis

from db import orgs
from db.migrate import migrate
from ingest import auth
from ingest.settings import Settings
from workers.broker import build_broker, enqueue_many

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).with_name("vapi-ingest")
ADMIN_DSN = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SECRET = "bench-secret"
SIGNER = Settings(webhook_secrets=(SECRET.encode(),))
#: Web processes for the service and for the bare baseline alike (one per core).
WEB_PROCESSES = os.cpu_count() or 1
TARGETS = {
    "ingest_vs_pgbench": 1.0,
    "ingest_vs_bare": 0.5,
    "p99_at_1000_ms": 25.0,
    "drain_per_s": 2000.0,
    "replay_10k_s": 10.0,
    "web_rss_mb": 150.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_body(call_id: str, filler: int) -> dict:
    return {
        "message": {
            "type": "status-update",
            "status": "in-progress",
            "timestamp": 1763784256708,
            "call": {
                "id": call_id,
                "type": "inboundPhoneCall",
                "assistantId": "asst-bench",
                "customer": {"number": "+14155552671"},
                "notes": "x" * filler,
            },
        }
    }


def report_body(call_id: str, transcript_chars: int) -> dict:
    return {
        "message": {
            "type": "end-of-call-report",
            "endedReason": "customer-ended-call",
            "timestamp": 1763784256708,
            "startedAt": "2025-11-22T10:00:00Z",
            "endedAt": "2025-11-22T10:03:12Z",
            "cost": 0.21,
            "call": {"id": call_id, "assistantId": "asst-bench"},
            "artifact": {
                "transcript": "AI: Hello. User: I need a cleaning. " * (transcript_chars // 36),
                "recordingUrl": f"https://r.example/{call_id}.wav",
            },
            "analysis": {"summary": "Booked a cleaning."},
        }
    }


def realistic_body(i: int, rng: random.Random) -> bytes:
    """80 % status updates of ~1-2 KB, 20 % end-of-call reports of ~6-20 KB."""
    call_id = f"bench-{uuid.uuid4().hex}"
    if rng.random() < 0.8:
        return json.dumps(status_body(call_id, rng.randrange(700, 1700))).encode()
    return json.dumps(report_body(call_id, rng.randrange(6000, 20000))).encode()


def write_requests(path: Path, n: int) -> float:
    """Pre-sign ``n`` unique requests for wrk; returns the mean body size in bytes."""
    rng = random.Random(1)
    sizes = []
    with path.open("wb") as f:
        for i in range(n):
            body = realistic_body(i, rng)
            headers = auth.sign(SIGNER, body)
            sizes.append(len(body))
            f.write(f"{headers['x-signature']}\n{headers['x-timestamp']}\n{len(body)}\n".encode() + body + b"\n")
    return statistics.mean(sizes)


def wrk(port: int, requests_file: Path, *, seconds: int, threads: int = 2, connections: int = 64) -> dict:
    """Run wrk at saturation; returns requests, rps, errors and latency percentiles (ms)."""
    env = {**os.environ, "BENCH_REQUESTS": str(requests_file), "BENCH_THREADS": str(threads)}
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "requests.lua"),
            f"http://127.0.0.1:{port}/webhooks/vapi",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    ).stdout
    fields = next(line for line in out.splitlines() if line.startswith("BENCH ")).split()[1:]
    n, duration_us, socket_errors, status_errors, p50, p99, p999, _worst, _ = map(int, fields)
    return {
        "requests": n,
        "rps": n / (duration_us / 1e6),
        "errors": socket_errors + status_errors,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "p999_ms": p999 / 1000,
        "seconds": duration_us / 1e6,
    }


def pgbench(dsn: str, org_id: uuid.UUID, *, seconds: int, payload_bytes: int) -> float:
    """Transactions/s of the delivery log's single-row insert with 8 clients."""
    payload = json.dumps({"type": "status-update", "filler": "x" * payload_bytes}).replace("'", "''")
    script = Path(tempfile.mkstemp(suffix=".sql")[1])
    script.write_text(
        "\\set id random(1, 2000000000)\n"
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, max_attempts, job_id, enqueued_at)"
        f" VALUES ('{org_id}', 'status-update', 'pgbench:' || :client_id || ':' || :id, '{payload}', 5,"
        " gen_random_uuid()::text, now()) ON CONFLICT (org_id, event_id) DO NOTHING RETURNING id;\n"
    )
    parts = urlsplit(dsn)
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            str(script),
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
            parts.path.lstrip("/"),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    script.unlink()
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_http(port: int, path: str = "/healthz", timeout_s: float = 30) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def open_loop(port: int, rate: int, seconds: int) -> dict:
    """Offer ``rate`` requests/s for ``seconds`` regardless of answers; latency from the scheduled send time."""
    rng = random.Random(2)
    prepared = []
    for _ in range(rate * seconds):
        body = json.dumps(status_body(f"open-{uuid.uuid4().hex}", rng.randrange(700, 1700))).encode()
        prepared.append((body, {"Content-Type": "application/json", **auth.sign(SIGNER, body)}))
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    url = f"http://127.0.0.1:{port}/webhooks/vapi"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:

        async def one(body: bytes, headers: dict[str, str], scheduled: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    errors += resp.status != 200
            except aiohttp.ClientError:
                errors += 1
            latencies.append(loop.time() - scheduled)

        begin = loop.time() + 0.2
        tasks = []
        for i, (body, headers) in enumerate(prepared):
            scheduled = begin + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body, headers, scheduled)))
        await asyncio.gather(*tasks)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "offered_rps": rate,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
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


async def run(seconds: int, out_dir: Path) -> dict:
    name = f"vapi_bench_{uuid.uuid4().hex[:8]}"
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path="/" + name))
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    org_id = await orgs.create_org(conn, name="Bench clinic")
    await orgs.add_agent(conn, org_id, "asst-bench")
    await conn.close()
    redis.Redis.from_url(REDIS_URL).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "REDIS_URL": REDIS_URL,
        "VAPI_WEBHOOK_SECRETS": SECRET,
        "PORT": str(port),
        "WORKER_METRICS_PORT": str(free_port()),
        "WORKER_PROCESSES": "2",
        "LOG_FORMAT": "json",
        "DB_POOL_MAX_SIZE": "20",
        "WEB_PROCESSES": str(WEB_PROCESSES),
    }
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
        stop(worker)
        broker.close()
    finally:
        redis.Redis.from_url(REDIS_URL).flushdb()
        admin = await asyncpg.connect(ADMIN_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
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


def _verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    miss = (target / value if higher_is_better else value / target) if value else float("inf")
    return f"missed ({miss:.2f}x off)"


def markdown(r: dict) -> str:
    ingest, bare, fixed, drain = r["ingest"], r["bare_aiohttp"], r["fixed_load"], r["drain"]
    vs_pg = ingest["accepted_per_s"] / r["pgbench_tps"]
    vs_bare = ingest["accepted_per_s"] / bare["rps"]
    rows = [
        f"Service benchmark, {r['date']}, {r['cores']} cores, PostgreSQL {r['postgres']}, "
        f"{r['seconds_per_run']} s per run, mean body {r['mean_body_bytes']} bytes, "
        f"{r['web_processes']} web processes (bare baseline alike), 2 worker processes",
        "",
        "| measure | value | baseline | ratio | target |",
        "|---|---|---|---|---|",
        f"| ingest at saturation (accepted/s) | {ingest['accepted_per_s']:.0f} | pgbench insert, 8 clients: "
        f"{r['pgbench_tps']:.0f} tps | {vs_pg:.2f} | >= 1.0: {_verdict(vs_pg, 1.0, higher_is_better=True)} |",
        f"| ingest at saturation (accepted/s) | {ingest['accepted_per_s']:.0f} | bare aiohttp: {bare['rps']:.0f} rps |"
        f" {vs_bare:.2f} | >= 0.5: {_verdict(vs_bare, 0.5, higher_is_better=True)} |",
        f"| saturation latency p50 / p99 / p99.9 (ms) | {ingest['p50_ms']:.1f} / {ingest['p99_ms']:.1f} / "
        f"{ingest['p999_ms']:.1f} | bare: {bare['p50_ms']:.1f} / {bare['p99_ms']:.1f} / {bare['p999_ms']:.1f} | | |",
        f"| saturation errors, duplicates | {ingest['errors']}, {ingest['duplicates']} of {ingest['requests']} |"
        f" bare: {bare['errors']} errors | | 0 |",
        f"| accept latency at 1,000 req/s offered, p50 / p99 / p99.9 (ms) | {fixed['p50_ms']:.1f} / "
        f"{fixed['p99_ms']:.1f} / {fixed['p999_ms']:.1f} ({fixed['errors']} errors) | | | p99 <= 25: "
        f"{_verdict(fixed['p99_ms'], 25.0, higher_is_better=False)} |",
        f"| drain 20,000 mixed, 2 worker processes (deliveries/s) | {drain['per_s']} ({drain['seconds']} s; queue "
        f"wait p99 {drain['queue_wait_p99_s']} s) | Dramatiq no-op actor: {r['dramatiq_noop_per_s']} messages/s | "
        f"{drain['per_s'] / r['dramatiq_noop_per_s']:.2f} | >= 2,000: "
        f"{_verdict(drain['per_s'], 2000, higher_is_better=True)} |",
        f"| replay 10,000 dead letters to completed (s) | {r['replay_10k_s']} | | | <= 10: "
        f"{_verdict(r['replay_10k_s'], 10.0, higher_is_better=False)} |",
        f"| peak RSS per web process at saturation (MB) | {', '.join(map(str, r['web_rss_mb']))} | | | <= 150: "
        f"{_verdict(max(r['web_rss_mb']), 150.0, higher_is_better=False)} |",
        f"| peak RSS per worker process (MB) | {', '.join(map(str, r['worker_rss_mb']))} | | | |",
        "",
        r["booking_table"].strip(),
    ]
    return "\n".join(rows)


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
