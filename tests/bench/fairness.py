"""Does one clinic's flood delay the others' calls? Quiet clinics' live queue wait: idle, during another
clinic's burst of 5,000 end-of-call reports, and during a replay of that clinic's 10,000 dead letters.

The quiet clinics' traffic (ten clinics, a tenth each) is an open loop of signed status updates over
HTTP at a steady rate; a
delivery's queue wait is ``last_attempt_at - received_at`` (stored to first claimed by a worker).
The flood comes from a second clinic (assistant ``asst-flood``) through the same web process and
workers: its reports posted as fast as 64 connections go, or its dead letters replayed by
``vapi-ingest deliveries replay``. Target (issues 10 and 17): each p99 at most 2x idle.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from ingest.webhook import auth
from tests.bench.loads import SIGNER, report_body, status_body

BIN = Path(sys.executable).with_name("vapi-ingest")


REPORTS_COMPLETED = (
    "SELECT count(*) FROM webhook_delivery_log WHERE event_type = 'end-of-call-report' AND status = 'completed'"
)

#: The quiet clinics: the bench clinic and nine more, each sending a tenth of the live traffic.
QUIET_ASSISTANTS = ["asst-bench", *(f"asst-quiet-{k}" for k in range(1, 10))]


async def live_traffic(port: int, tag: str, *, rate: int, seconds: float) -> int:
    """Post ``rate`` status updates per second for ``seconds`` (call ids ``live-<tag>-n``), spread over the
    quiet clinics in turn; returns how many."""
    url = f"http://127.0.0.1:{port}/webhooks/vapi"
    n = int(rate * seconds)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            message = status_body(f"live-{tag}-{i}", 800)
            message["message"]["call"]["assistantId"] = QUIET_ASSISTANTS[i % len(QUIET_ASSISTANTS)]
            body = json.dumps(message).encode()
            headers = {"Content-Type": "application/json", **auth.sign(SIGNER, body)}
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()

        begin = loop.time()
        tasks = []
        for i in range(n):
            delay = begin + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return n


def flood_bodies(n: int) -> list[bytes]:
    """``n`` end-of-call reports of the flood clinic (assistant ``asst-flood``), each of a new call."""
    bodies = []
    for i in range(n):
        message = report_body(f"flood-{uuid.uuid4().hex[:8]}-{i}", 2000)
        message["message"]["call"]["assistantId"] = "asst-flood"
        bodies.append(json.dumps(message).encode())
    return bodies


async def burst(port: int, bodies: list[bytes], *, connections: int = 64) -> float:
    """Post ``bodies`` as fast as ``connections`` go; returns seconds taken."""
    url = f"http://127.0.0.1:{port}/webhooks/vapi"
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def one(body: bytes) -> None:
            headers = {"Content-Type": "application/json", **auth.sign(SIGNER, body)}
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()

        await asyncio.gather(*(one(b) for b in bodies))
    return round(time.monotonic() - started, 1)


async def queue_wait_ms(dsn: str, tag: str, n: int, timeout_s: float = 300) -> dict[str, float]:
    """p50/p99/max queue wait of the ``n`` live deliveries tagged ``tag``, once all were claimed."""
    conn = await asyncpg.connect(dsn)
    pattern = f"status-update:live-{tag}-%"
    try:
        deadline = time.monotonic() + timeout_s
        while (
            await conn.fetchval(
                "SELECT count(*) FROM webhook_delivery_log WHERE event_id LIKE $1 AND last_attempt_at IS NOT NULL",
                pattern,
            )
            < n
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"live deliveries {tag} not all claimed in {timeout_s} s")
            await asyncio.sleep(0.1)
        row = await conn.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY w) AS p50,"
            "       percentile_cont(0.99) WITHIN GROUP (ORDER BY w) AS p99, max(w) AS worst"
            "  FROM (SELECT extract(epoch FROM last_attempt_at - received_at) * 1000 AS w"
            "          FROM webhook_delivery_log WHERE event_id LIKE $1) s",
            pattern,
        )
        assert row is not None  # an aggregate always returns one row
        return {
            k: round(float(row[column]), 1) for k, column in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "worst"))
        }
    finally:
        await conn.close()


async def measure(
    port: int,
    dsn: str,
    env: dict[str, str],
    seed_dead_letters,
    restart_workers,
    *,
    rate: int = 50,
    seconds: float = 20,
):
    """The quiet clinics' live queue wait idle; during a 5,000-report burst of the flood clinic; while a backlog
    of 5,000 of its reports drains (posted while the workers were stopped, as after an outage); and during
    a replay of its 10,000 dead letters (``seed_dead_letters(org_id)`` makes them).

    Needs the web process on ``port`` and the workers running; ``restart_workers(between)`` stops them,
    awaits ``between()`` and starts them again. Returns the figures, their ratios to idle, and how long
    the burst took to post and the replay to finish.
    """
    for assistant in QUIET_ASSISTANTS[1:]:
        _create_clinic(env, assistant)
    flood_org = _create_clinic(env, "asst-flood")
    # Warm up first: workers that just started (and fresh connections) would count against "idle".
    await queue_wait_ms(dsn, "warm", await live_traffic(port, "warm", rate=rate, seconds=3))
    idle_n = await live_traffic(port, "idle", rate=rate, seconds=seconds)
    idle = await queue_wait_ms(dsn, "idle", idle_n)
    done_before = await asyncpg_value(dsn, REPORTS_COMPLETED)
    flooding = asyncio.create_task(burst(port, flood_bodies(5_000)))
    burst_drained = asyncio.create_task(_reports_done_s(dsn, done_before + 5_000))
    burst_n = await live_traffic(port, "burst", rate=rate, seconds=seconds)
    burst_s = await flooding
    during_burst = await queue_wait_ms(dsn, "burst", burst_n)
    await _all_done(dsn)
    backlog = flood_bodies(5_000)
    done_before = await asyncpg_value(dsn, REPORTS_COMPLETED)
    await restart_workers(lambda: burst(port, backlog))
    # The live traffic starts once the workers are draining the backlog (not while they boot).
    while await asyncpg_value(dsn, REPORTS_COMPLETED) == done_before:
        await asyncio.sleep(0.05)
    backlog_drained = asyncio.create_task(_reports_done_s(dsn, done_before + 5_000))
    backlog_n = await live_traffic(port, "backlog", rate=rate, seconds=seconds)
    during_backlog = await queue_wait_ms(dsn, "backlog", backlog_n)
    await _all_done(dsn)
    await seed_dead_letters(flood_org)
    started = time.monotonic()
    replay = subprocess.Popen(
        [str(BIN), "deliveries", "replay", "--status", "dead_letter", "--yes"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # let the replay get going: the first batches are queued
    busy_n = await live_traffic(port, "busy", rate=rate, seconds=seconds)
    busy = await queue_wait_ms(dsn, "busy", busy_n)
    await asyncio.to_thread(replay.wait)
    await _all_done(dsn)
    replayed = await asyncpg_value(dsn, "SELECT count(*) FROM webhook_delivery_log WHERE replay_count > 0")
    return {
        "live_rate_per_s": rate,
        "seconds": seconds,
        "idle": idle,
        "during_burst": during_burst,
        "burst_ratio_p99": round(during_burst["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None,
        "burst_post_s": burst_s,
        # The flood's own cost: from its first report posted (burst) or first completed (backlog) to its last.
        "burst_drain_s": await burst_drained,
        "during_backlog": during_backlog,
        "backlog_ratio_p99": round(during_backlog["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None,
        "backlog_drain_s": await backlog_drained,
        "during_replay": busy,
        "ratio_p99": round(busy["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None,
        "replayed": replayed,
        "replay_s": round(time.monotonic() - started, 1),
    }


def _create_clinic(env: dict[str, str], assistant_id: str) -> str:
    return subprocess.run(
        [str(BIN), "orgs", "create", "--name", f"Clinic {assistant_id}", "--assistant-id", assistant_id],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


async def asyncpg_value(dsn: str, query: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def _reports_done_s(dsn: str, completed: int, timeout_s: float = 600) -> float:
    """Seconds from now until ``completed`` end-of-call reports are completed (the flood's drain)."""
    started = time.monotonic()
    while await asyncpg_value(dsn, REPORTS_COMPLETED) < completed:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{completed} reports not completed after {timeout_s} s")
        await asyncio.sleep(0.05)
    return round(time.monotonic() - started, 1)


async def _all_done(dsn: str, timeout_s: float = 600) -> None:
    """Wait until no delivery is left to process (pending or failed), so phases do not overlap."""
    deadline = time.monotonic() + timeout_s
    while await asyncpg_value(
        dsn, "SELECT count(*) FROM webhook_delivery_log WHERE status IN ('pending', 'processing', 'failed')"
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"deliveries still to process after {timeout_s} s")
        await asyncio.sleep(0.2)


async def _standalone(rate: int, seconds: float) -> dict:
    """Set up a scratch database, the web process and 2 worker processes, then :func:`measure`."""
    import tempfile

    from tests.bench.datapath import dead_letters, drop_database, fresh_database, version_env
    from tests.bench.processes import free_port, start, stop, wait_http

    name, dsn, _ = await fresh_database(None)
    tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
    port = free_port()
    env = version_env(dsn, port, None)
    web = start([str(BIN), "serve"], env, tmp / "web.log")
    workers = [start([str(BIN), "worker"], env, tmp / "worker.log")]

    async def restart_workers(between) -> None:
        stop(workers.pop())
        await between()
        workers.append(start([str(BIN), "worker"], env, tmp / "worker.log"))

    try:
        wait_http(port, "/readyz")
        return await measure(
            port, dsn, env, lambda org: dead_letters(dsn, org, 10_000), restart_workers, rate=rate, seconds=seconds
        )
    finally:
        stop(web)
        for worker in workers:
            stop(worker)
        await drop_database(name)


def main() -> None:
    """``python -m tests.bench.fairness [--rate N] [--seconds S]``: this measure alone."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50, help="live messages per second (default 50)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of live traffic per phase (default 20)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_standalone(args.rate, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
