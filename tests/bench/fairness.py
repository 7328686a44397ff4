"""Does a bulk replay delay live calls? Live queue wait, idle and during a 10,000-delivery replay.

Live traffic is an open loop of signed status updates over HTTP at a steady
rate; a delivery's queue wait is ``last_attempt_at - received_at`` (stored
to first claimed by a worker). Measured once with nothing else to do and once
while ``vapi-ingest deliveries replay`` replays 10,000 dead letters through the
same workers. Target (issue 10): the p99 during the replay is at most 2x idle.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from ingest import auth
from tests.bench.loads import SIGNER, status_body

BIN = Path(sys.executable).with_name("vapi-ingest")


async def live_traffic(port: int, tag: str, *, rate: int, seconds: float) -> int:
    """Post ``rate`` status updates per second for ``seconds`` (call ids ``live-<tag>-n``); returns how many."""
    url = f"http://127.0.0.1:{port}/webhooks/vapi"
    n = int(rate * seconds)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = json.dumps(status_body(f"live-{tag}-{i}", 800)).encode()
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
        return {
            k: round(float(row[column]), 1) for k, column in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "worst"))
        }
    finally:
        await conn.close()


async def measure(port: int, dsn: str, env: dict[str, str], seed_dead_letters, *, rate: int = 50, seconds: float = 20):
    """Idle live queue wait, then the same during a replay of 10,000 dead letters (``seed_dead_letters()`` makes them).

    Needs the web process on ``port`` and the workers running. Returns both figures, the ratio, and
    how long the replay took.
    """
    # Warm up first: workers that just started (and fresh connections) would count against "idle".
    await queue_wait_ms(dsn, "warm", await live_traffic(port, "warm", rate=rate, seconds=3))
    idle_n = await live_traffic(port, "idle", rate=rate, seconds=seconds)
    idle = await queue_wait_ms(dsn, "idle", idle_n)
    await seed_dead_letters()
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
    conn = await asyncpg.connect(dsn)
    try:
        while await conn.fetchval(
            "SELECT count(*) FROM webhook_delivery_log WHERE replay_count > 0 AND status <> 'completed'"
        ):
            await asyncio.sleep(0.1)
        replayed = await conn.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE replay_count > 0")
    finally:
        await conn.close()
    return {
        "live_rate_per_s": rate,
        "seconds": seconds,
        "idle": idle,
        "during_replay": busy,
        "ratio_p99": round(busy["p99_ms"] / idle["p99_ms"], 2) if idle["p99_ms"] else None,
        "replayed": replayed,
        "replay_s": round(time.monotonic() - started, 1),
        "tag": uuid.uuid4().hex[:6],
    }


async def _standalone(rate: int, seconds: float) -> dict:
    """Set up a scratch database, the web process and 2 worker processes, then :func:`measure`."""
    import tempfile

    from tests.bench.datapath import dead_letters, drop_database, fresh_database, version_env
    from tests.bench.processes import free_port, start, stop, wait_http

    name, dsn, org_id = await fresh_database(None)
    tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
    port = free_port()
    env = version_env(dsn, port, None)
    web = start([str(BIN), "serve"], env, tmp / "web.log")
    worker = start([str(BIN), "worker"], env, tmp / "worker.log")
    try:
        wait_http(port, "/readyz")
        return await measure(port, dsn, env, lambda: dead_letters(dsn, org_id, 10_000), rate=rate, seconds=seconds)
    finally:
        stop(web)
        stop(worker)
        await drop_database(name)


def main() -> None:
    """``python -m tests.bench.replay_isolation [--rate N] [--seconds S]``: this measure alone."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50, help="live messages per second (default 50)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of live traffic per phase (default 20)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_standalone(args.rate, args.seconds)), indent=2))


if __name__ == "__main__":
    main()
