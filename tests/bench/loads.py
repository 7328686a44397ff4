"""The benchmark's load: realistic signed bodies, wrk at saturation, pgbench's baseline insert, an open loop."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from ingest.settings import Settings
from ingest.webhook import auth
from tests.helpers import found

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"
SIGNER = Settings(webhook_secrets=(SECRET.encode(),))


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


#: pgbench's table: only the primary key and the unique idempotency key, as the issue's baseline asks.
PGBENCH_TABLE = """
CREATE TABLE IF NOT EXISTS pgbench_deliveries (
    id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id   uuid NOT NULL,
    event_id text NOT NULL,
    payload  jsonb NOT NULL,
    UNIQUE (org_id, event_id)
)
"""


def pgbench(dsn: str, org_id: uuid.UUID, *, seconds: int, payload_bytes: int) -> float:
    """Transactions/s of a durable single-row ``INSERT ... ON CONFLICT DO NOTHING`` with 8 clients, into a table
    with only the primary key and the unique key (create it first: :data:`PGBENCH_TABLE`)."""
    payload = json.dumps({"type": "status-update", "filler": "x" * payload_bytes}).replace("'", "''")
    script = Path(tempfile.mkstemp(suffix=".sql")[1])
    script.write_text(
        "\\set id random(1, 2000000000)\n"
        "INSERT INTO pgbench_deliveries (org_id, event_id, payload)"
        f" VALUES ('{org_id}', 'pgbench:' || :client_id || ':' || :id, '{payload}')"
        " ON CONFLICT (org_id, event_id) DO NOTHING RETURNING id;\n"
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
    return float(found(r"tps = ([\d.]+)", out))


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
