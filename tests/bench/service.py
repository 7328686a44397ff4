"""The service benchmark: ``make bench`` (a report, not a test).

Measures in one run, on this machine, side by side with baselines and, with
``--baseline REF`` (``make bench`` passes ``BENCH_BASELINE``, default
``origin/main``), with that git ref of the service measured the same way,
interleaved with this checkout (:mod:`tests.bench.datapath`):

1. Ingest at saturation (wrk, pre-signed unique status-update and
   end-of-call-report bodies of 1-20 KB) with 1 and 2 web processes, beside a
   bare aiohttp endpoint that only reads the body (1 and 2 processes) and
   pgbench doing a durable single-row ``INSERT ... ON CONFLICT DO NOTHING``
   with 8 clients into a table with only the primary and the unique key.
2. Drain of that backlog by 2 worker processes, beside a no-op async Dramatiq
   actor draining 20,000 messages with the same processes, threads and Redis.
3. Accept latency at 1,000 requests/s offered, receipt-to-completed under that
   load, and PostgreSQL's cost per delivery (WAL bytes, row versions, commits).
4. Replay: 10,000 dead letters to completed; live queue wait idle and during such a replay.
5. Peak RSS of the web and worker processes.
6. Console pages at 1,000,000 deliveries, and ingest while an operator
   browses (``tests.bench.console``; this checkout only).
7. Booking latency (``tests.bench.booking``; this checkout only).

Writes ``tests/bench/results/<date>.json`` and ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis

from tests.bench import console as console_bench
from tests.bench import datapath
from tests.bench.datapath import BIN, REDIS_URL, fresh_database, sql, version_env
from tests.bench.loads import HERE, PGBENCH_TABLE, pgbench, write_requests, wrk
from tests.bench.processes import free_port, start, stop, wait_http
from tests.bench.report import markdown
from workers.broker import build_broker

#: Deliveries in the log while the console is measured (issue 11's size).
CONSOLE_ROWS = 1_000_000
#: Messages the no-op Dramatiq baseline drains.
NOOP_MESSAGES = 20_000


async def noop_drain(tmp: Path) -> float:
    """Dramatiq alone: 20,000 messages drained by a do-nothing async actor (2 processes x 8 threads); messages/s."""
    import dramatiq

    noop_broker = build_broker(REDIS_URL, namespace="noop")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()

    def send() -> None:
        for _ in range(NOOP_MESSAGES):
            noop_broker.enqueue(
                dramatiq.Message(
                    queue_name="deliveries",
                    actor_name="process_delivery",
                    args=(str(uuid.uuid4()),),
                    kwargs={},
                    options={},
                )
            )

    await asyncio.to_thread(send)
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
        {**version_env("", 0, None), "dramatiq_queue_prefetch": "64", "dramatiq_worker_timeout": "100"},
        tmp / "noop.log",
    )
    started = time.monotonic()
    while client.llen("noop:deliveries") or client.hlen("noop:deliveries.msgs"):
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    stop(workers)
    noop_broker.close()
    return round(NOOP_MESSAGES / elapsed)


def baseline_tree(ref: str, tmp: Path) -> tuple[Path, str]:
    """A ``git worktree`` of ``ref`` under ``tmp``; returns its path and the commit it is."""
    root = HERE.parents[1]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = tmp / f"baseline-{commit}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=root, check=True, capture_output=True)
    return tree, commit


def remove_tree(tree: Path) -> None:
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(tree)], cwd=HERE.parents[1], check=False, capture_output=True
    )


async def baselines(requests_file: Path, seconds: int, mean_body: int, tmp: Path) -> dict:
    """The bare aiohttp endpoint (1 and 2 processes), pgbench's insert, and Dramatiq's no-op drain."""
    out: dict = {}
    for processes in (1, 2):
        port = free_port()
        bare = start(
            [sys.executable, str(HERE / "bare_app.py"), str(port), str(processes)],
            version_env("", port, None),
            tmp / "bare.log",
        )
        time.sleep(1.0)  # the bare app has no health route; it starts in well under a second
        out[f"bare_{processes}"] = wrk(port, requests_file, seconds=seconds)
        stop(bare)
    name, dsn, org = await fresh_database(None)
    try:
        await sql(dsn, PGBENCH_TABLE)
        out["pgbench_tps"] = pgbench(dsn, uuid.UUID(org), seconds=seconds, payload_bytes=mean_body)
        out["postgres"] = await sql(dsn, "SHOW server_version")
    finally:
        await datapath.drop_database(name)
    out["dramatiq_noop_per_s"] = await noop_drain(tmp)
    return out


async def console_and_booking(seconds: int, tmp: Path) -> dict:
    """The console at 1,000,000 deliveries and the booking latency table, for this checkout."""
    name, dsn, _ = await fresh_database(None)
    port = free_port()
    env = version_env(dsn, port, None, WEB_PROCESSES="2", ADMIN_TOKEN=console_bench.ADMIN_TOKEN)
    try:
        seeded = await console_bench.seed(dsn, CONSOLE_ROWS)
        web = start([str(BIN), "serve"], env, tmp / "console-web.log")
        wait_http(port, "/readyz")
        result = await console_bench.measure(port, web.pid, seeded, tmp, samples=100, seconds=max(seconds // 2, 1))
        stop(web)
    finally:
        await datapath.drop_database(name)
    booking = subprocess.run(
        [sys.executable, "-m", "tests.bench.booking", "--samples", "500"],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parents[1],
    )
    return {"console": result, "booking_table": booking.stdout}


def _save_partial(out_dir: Path, results: dict) -> None:
    """What is measured so far, so a later failure does not lose it (``partial.json``, replaced by the report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "partial.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


async def run(seconds: int, out_dir: Path, baseline_ref: str | None, with_console: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": __import__("os").cpu_count(),
        "seconds_per_run": seconds,
    }
    tree = None
    try:
        requests_file = tmp / "requests.bin"
        # Enough unique bodies that wrk never wraps around into duplicates.
        results["mean_body_bytes"] = round(write_requests(requests_file, 12_000 * seconds))
        results.update(await baselines(requests_file, seconds, results["mean_body_bytes"], tmp))
        if baseline_ref:
            tree, results["baseline_commit"] = baseline_tree(baseline_ref, tmp)
        # Interleaved: this checkout, the baseline, then this checkout again; each figure of this
        # checkout is the better of its two runs' medians only where noted in the report.
        results["this"] = await datapath.measure(None, requests_file, seconds, tmp)
        _save_partial(out_dir, results)
        if tree is not None:
            results["baseline"] = await datapath.measure(tree, requests_file, seconds, tmp)
            _save_partial(out_dir, results)
        if with_console:
            results.update(await console_and_booking(seconds, tmp))
    finally:
        if tree is not None:
            remove_tree(tree)
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(tmp, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    (out_dir / f"{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = markdown(results)
    (out_dir / f"{stamp}.md").write_text(table + "\n")
    (out_dir / "partial.json").unlink(missing_ok=True)
    print(table)
    return results


def main() -> None:
    """Entry point: ``python -m tests.bench.service [--seconds N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each timed run (default 10)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where to write <date>.json and .md")
    parser.add_argument(
        "--baseline", default=None, help="a git ref measured the same way, interleaved (e.g. origin/main)"
    )
    parser.add_argument("--no-console", action="store_true", help="skip the console and booking benchmarks")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("pgbench") is None:
        sys.exit("make bench needs wrk and pgbench: apt-get install wrk postgresql-client")
    asyncio.run(run(args.seconds, args.out, args.baseline, not args.no_console))


if __name__ == "__main__":
    main()
