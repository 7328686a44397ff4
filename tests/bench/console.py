"""Console pages at 1,000,000 deliveries, and whether an operator browsing slows the receiver.

1. Seeds ``webhook_delivery_log`` with 1,000,000 deliveries over 100 clinics,
   100,000 of them in the last hour and the rest over the 33 days before
   (0.1 % dead letters under four error shapes, 0.1 % missed tool calls,
   the rest completed), 200,000 more dead letters of the first clinic in one
   group (one failure), and a week of that clinic's appointments.
2. Signs in over HTTP with the admin token, then with that clinic's token,
   and loads each console page ``samples`` times in a row: p50 / p95 of the
   whole response (render and body). Targets (issues 11 and 17): p95 under
   100 ms for both, and a clinic's at most 2x the admin's.
3. Ingest at saturation (wrk, as ``make bench``) alone, and while one
   operator loads a console page every second (a fast person), and every
   100 ms (stress); the median ratio of the accepted rates over 3 rounds.
   Target: no drop beyond this machine's run-to-run noise at the person's
   pace (>= 0.97).
4. Since that noise (20-36 % between identical runs here) exceeds the
   effect, the CPU the web process and PostgreSQL spend per page and per
   ingested request (from /proc), and so the share of ingest's CPU an
   operator takes at each pace.

Run alone with ``python -m tests.bench.console``; ``make bench`` runs it too.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from db import tokens
from tests.bench.loads import write_requests, wrk
from tests.bench.processes import service_cpu_s

BIN = Path(sys.executable).with_name("vapi-ingest")
#: The admin token the bench's web process is started with.
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
#: An operator's pace while ingest runs, a page every so many seconds: a fast person clicking (the
#: target's), and ten times that (a stress figure; the overview itself refreshes every 5 s).
PACES_S = (1.0, 0.1)
#: Ingest while browsing over ingest alone, at the first pace; below 1.0 by this machine's run-to-run noise.
RATIO_TARGET = 0.97
#: Rounds of the ingest comparison (each: alone, the paces, the paces reversed, alone).
ROUNDS = 3

#: Clinics, how many of the deliveries arrived in the last hour, and the first clinic's dead letters of one
#: failure on top of them (issue 17's scale).
CLINICS, LAST_HOUR, DEAD_LETTERS = 100, 100_000, 200_000
#: A clinic's page over the admin's, at most (p95; issue 17) ...
CLINIC_RATIO_TARGET = 2.0
#: ... or this much slower: a clinic's session spends about 1 ms per page on its own round trips (the
#: token's check, row-level security's settings in and out) whatever the log holds, which on a 2 ms page
#: is a ratio that says nothing about its reads.
CLINIC_ALLOWANCE_MS = 2.0
CLINICS_SQL = (
    "INSERT INTO organizations (name, timezone) SELECT 'Bench clinic ' || g, 'UTC' FROM generate_series(2, $1) g"
)
SEED_SQL = """
INSERT INTO webhook_delivery_log (org_id, event_type, event_id, received_at, created_at, status, attempts,
                                  last_attempt_at, completed_at, error_message, vapi_call_id, payload, tool_name,
                                  customer_number)
SELECT o.ids[1 + i % cardinality(o.ids)], t.kind, t.kind || ':seed-' || i, r.at, r.at,
       CASE WHEN i % 997 = 7 THEN 'dead_letter' WHEN i % 991 = 9 THEN 'missed' ELSE 'completed' END,
       CASE WHEN i % 997 = 7 THEN 5 ELSE 1 END,
       r.at + interval '50 ms',
       CASE WHEN i % 997 = 7 OR i % 991 = 9 THEN NULL ELSE r.at + interval '50 ms' END,
       CASE WHEN i % 997 = 7 THEN (ARRAY['relation "calls_' || i || '" does not exist',
                                          'timeout after ' || i || ' ms',
                                          'unknown tool ''x' || i || '''',
                                          'lead ' || gen_random_uuid() || ' not found'])[1 + (i / 1000) % 4] END,
       'seed-call-' || i,
       jsonb_build_object('type', t.kind, 'timestamp', 1700000000000 + i, 'status', 'in-progress',
           'call', jsonb_build_object('id', 'seed-call-' || i,
               'customer', jsonb_build_object('number', '+1555' || lpad((i % 100000)::text, 7, '0')))),
       CASE WHEN t.kind = 'tool-calls' THEN 'bookClinicAppointment' END,
       '+1555' || lpad((i % 100000)::text, 7, '0')
  FROM generate_series(1, $1::int) i
 CROSS JOIN (SELECT array_agg(id ORDER BY created_at, id) AS ids FROM organizations) o
 CROSS JOIN LATERAL (SELECT (ARRAY['status-update', 'end-of-call-report', 'tool-calls'])[1 + i % 3] AS kind) t
 -- The newest $2 over the last hour, the rest one every 2.88 s before it (33 days for 1,000,000).
 CROSS JOIN LATERAL (SELECT CASE WHEN i <= $2 THEN now() - i * (interval '1 hour' / $2)
                                 ELSE now() - interval '1 hour' - (i - $2) * interval '2.88 s' END AS at) r
"""

#: One failure that dead-lettered $2 deliveries of clinic $1 over the day before yesterday.
DEAD_LETTERS_SQL = """
INSERT INTO webhook_delivery_log (org_id, event_type, event_id, received_at, status, attempts, last_attempt_at,
                                  error_message, vapi_call_id, payload)
SELECT $1, 'end-of-call-report', 'end-of-call-report:dead-' || i, now() - interval '2 days' + i * (interval '1 day' / $2),
       'dead_letter', 5, now() - interval '1 day', 'function upsert_call(' || i || ') does not exist',
       'dead-call-' || i, jsonb_build_object('type', 'end-of-call-report', 'call', jsonb_build_object('id', 'dead-call-' || i))
  FROM generate_series(1, $2::int) i
"""

APPOINTMENTS_SQL = """
WITH lead AS (
    INSERT INTO leads (org_id, name, phone) SELECT $1, 'Patient ' || g, '+4420718' || lpad(g::text, 5, '0')
      FROM generate_series(1, 200) g RETURNING id, phone)
INSERT INTO appointments (org_id, contact_id, service_type, scheduled_at, duration_minutes, ends_at, status, deleted_at)
SELECT $1, lead.id, 'cleaning', s.at, 30, s.at + interval '30 minutes',
       CASE WHEN n % 10 = 0 THEN 'cancelled' ELSE 'confirmed' END, CASE WHEN n % 10 = 0 THEN now() END
  FROM (SELECT id, row_number() OVER (ORDER BY phone) AS n FROM lead) lead
 CROSS JOIN LATERAL (SELECT date_trunc('week', now()) + (lead.n % 5) * interval '1 day'
                            + interval '9 hours' + (lead.n / 5) * interval '30 minutes' AS at) s
 WHERE lead.n <= 80
"""


async def seed(dsn: str, n: int) -> dict[str, Any]:
    """Fill a migrated database that holds one clinic with ``n`` deliveries over :data:`CLINICS` clinics
    (:data:`LAST_HOUR` of them in the last hour) and a week of the first clinic's appointments.

    Returns:
        What the pages are opened with, all of the first clinic: ``{rows, org_id, token, delivery_id,
        call_id, number, group, seconds}``; ``token`` is an API token of that clinic.
    """
    started = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CLINICS_SQL, CLINICS)
        await conn.execute(SEED_SQL, n, min(LAST_HOUR, n))
        org_id = await conn.fetchval("SELECT id FROM organizations ORDER BY created_at, id LIMIT 1")
        token = await tokens.create(conn, org_id, name="bench")
        await conn.execute(DEAD_LETTERS_SQL, org_id, DEAD_LETTERS)
        await conn.execute(APPOINTMENTS_SQL, org_id)
        await conn.execute("VACUUM ANALYZE webhook_delivery_log")
        await conn.execute("ANALYZE appointments")
        # The seed wrote ~1 GB of WAL: checkpoint now, not during the timed runs.
        await conn.execute("CHECKPOINT")
        group = await conn.fetchval(
            "SELECT error_group FROM webhook_delivery_log WHERE status = 'dead_letter' AND org_id = $1"
            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            org_id,
        )
        delivery_id = await conn.fetchval("SELECT id FROM webhook_delivery_log WHERE event_id = 'tool-calls:seed-500'")
    finally:
        await conn.close()
    # Delivery 500, call 4200 and number 4200 are the first clinic's (i % CLINICS == 0).
    return {
        "rows": n,
        "org_id": org_id,
        "token": token,
        "delivery_id": delivery_id,
        "call_id": "seed-call-4200",
        "number": "+15550004200",
        "group": group,
        "seconds": round(time.monotonic() - started, 1),
    }


def pages(seeded: dict[str, Any], *, admin: bool = True) -> dict[str, str]:
    """Each console page by name, as its path under ``/console``; without ``admin``, those a clinic may open."""
    every = {
        "overview": "/",
        "dead letters": "/dead-letters",
        "one group": f"/dead-letters?group={seeded['group']}",
        "replay confirmation": f"/dead-letters/replay?group={seeded['group']}",
        "delivery": f"/deliveries/{seeded['delivery_id']}",
        "missed calls": "/missed",
        "search: call id": f"/search?q={seeded['call_id']}",
        "search: phone number": f"/search?q=%2B{seeded['number'][1:]}",
        "appointments": f"/appointments?org={seeded['org_id']}",
        "replays": "/replays",
        "clinics": "/clinics",
        "quarantine": "/quarantine",
    }
    return every if admin else {name: path for name, path in every.items() if name not in ADMIN_ONLY}


#: Pages only the admin opens.
ADMIN_ONLY = ("clinics", "quarantine")


async def signed_in(base: str, token: str = ADMIN_TOKEN) -> aiohttp.ClientSession:
    """A client session signed in to the console with ``token`` (the admin's unless given).

    Raises:
        RuntimeError: the sign-in did not land on the overview.
    """
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for an IP host
    async with session.get(f"{base}/login") as resp:
        found = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
    assert found, "no CSRF token on the sign-in page"
    async with session.post(f"{base}/login", data={"token": token, "csrf": found.group(1)}) as resp:
        if resp.status != 200 or not str(resp.url).endswith("/console/"):
            await session.close()
            raise RuntimeError(f"console sign-in failed: {resp.status} {resp.url}")
    return session


async def _load(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url, allow_redirects=False) as resp:
        await resp.read()
        if resp.status not in (200, 302):
            raise RuntimeError(f"{url}: {resp.status}")
    return (time.perf_counter() - started) * 1000


def _summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1), "n": len(ordered)}


async def page_latency(
    base: str, paths: dict[str, str], samples: int, token: str = ADMIN_TOKEN
) -> dict[str, dict[str, float]]:
    """p50 / p95 (ms) of each page over ``samples`` loads, one after another, after one warm-up load,
    signed in with ``token``."""
    session = await signed_in(base, token)
    try:
        result = {}
        for name, path in paths.items():
            await _load(session, base + path)
            result[name] = _summary([await _load(session, base + path) for _ in range(samples)])
        return result
    finally:
        await session.close()


async def scrape_latency(root: str, samples: int) -> dict[str, dict[str, float]]:
    """p50 / p95 (ms) of Prometheus's scrape (``/metrics``: the gauges read from PostgreSQL) and, as its
    baseline, of ``/healthz`` (no database), ``samples`` loads each after one warm-up."""
    async with aiohttp.ClientSession() as session:
        result = {}
        for path in ("/metrics", "/healthz"):
            await _load(session, root + path)
            result[path] = _summary([await _load(session, root + path) for _ in range(samples)])
        return result


async def browse(base: str, paths: dict[str, str], think_s: float, stop: asyncio.Event) -> list[float]:
    """One operator: every page in turn, one every ``think_s``, until ``stop``; the load times (ms)."""
    session = await signed_in(base)
    times: list[float] = []
    try:
        while not stop.is_set():
            for path in paths.values():
                if stop.is_set():
                    break
                times.append(await _load(session, base + path))
                await asyncio.sleep(think_s)
    finally:
        await session.close()
    return times


async def ingest_while_browsing(
    port: int, web_pid: int, paths: dict[str, str], tmp: Path, seconds: int, *, rounds: int = ROUNDS
) -> dict[str, Any]:
    """Ingest at saturation alone and while one operator browses at each of :data:`PACES_S`.

    Each round runs alone, each pace, each pace reversed, alone (``seconds`` each), so a drift within it,
    such as the growing table, cancels; a pace's ratio is the median over rounds of (its rate / the
    round's alone rate).

    Returns:
        ``{alone_rps, alone_spread, cpu_per_request_ms, errors, paces: {think_s: {rps, ratio, ratios,
        pages: {p50_ms, p95_ms, n}}}}``; ``alone_spread`` is (max - min) / mean of the alone runs: this
        machine's run-to-run noise. ``cpu_per_request_ms``: web and PostgreSQL CPU per request when ingest
        runs alone.
    """
    base = f"http://127.0.0.1:{port}/console"
    order: list[float | None] = [None, *PACES_S, *reversed(PACES_S), None]
    alone_runs: list[float] = []
    ratios: dict[float, list[float]] = {pace: [] for pace in PACES_S}
    rates: dict[float, list[float]] = {pace: [] for pace in PACES_S}
    pages_ms: dict[float, list[float]] = {pace: [] for pace in PACES_S}
    errors = 0
    ingest_cpu_s, alone_requests = 0.0, 0
    await _ingest(port, tmp, max(seconds // 2, 1))  # caches and pools warm up; not counted
    for _ in range(rounds):
        this_round: dict[float | None, list[float]] = {pace: [] for pace in order}
        for think_s in order:
            stop = asyncio.Event()
            operator = None if think_s is None else asyncio.create_task(browse(base, paths, think_s, stop))
            cpu_before = service_cpu_s(web_pid)
            result = await _ingest(port, tmp, seconds)
            if think_s is None:
                ingest_cpu_s += service_cpu_s(web_pid) - cpu_before
                alone_requests += result["requests"]
            stop.set()
            if operator is not None and think_s is not None:
                pages_ms[think_s] += await operator
            this_round[think_s].append(result["rps"])
            errors += result["errors"]
        alone = statistics.mean(this_round[None])
        alone_runs += this_round[None]
        for pace in PACES_S:
            rates[pace] += this_round[pace]
            ratios[pace].append(statistics.mean(this_round[pace]) / alone)
    alone_mean = statistics.mean(alone_runs)
    paces = {
        pace: {
            "rps": round(statistics.mean(rates[pace])),
            "ratio": round(statistics.median(ratios[pace]), 3),
            "ratios": [round(r, 3) for r in ratios[pace]],
            "pages": _summary(pages_ms[pace]),
        }
        for pace in PACES_S
    }
    return {
        "alone_rps": round(alone_mean),
        "alone_spread": round((max(alone_runs) - min(alone_runs)) / alone_mean, 3),
        "cpu_per_request_ms": round(ingest_cpu_s * 1000 / alone_requests, 3),
        "errors": errors,
        "paces": paces,
    }


async def _ingest(port: int, tmp: Path, seconds: int) -> dict[str, Any]:
    """One wrk run at saturation over new, unique request bodies (no run replays another's)."""
    requests_file = tmp / "console-ingest.bin"
    await asyncio.to_thread(write_requests, requests_file, 9_000 * seconds)
    try:
        return await asyncio.to_thread(wrk, port, requests_file, seconds=seconds)
    finally:
        requests_file.unlink()


async def measure(
    port: int, web_pid: int, seeded: dict[str, Any], tmp: Path, *, samples: int, seconds: int
) -> dict[str, Any]:
    """Page latency at rest (and the CPU a page costs the web process and PostgreSQL), then ingest alone
    and while browsing. ``web_pid`` is the serving ``vapi-ingest serve``."""
    paths = pages(seeded)
    base = f"http://127.0.0.1:{port}/console"
    cpu_before = service_cpu_s(web_pid)
    latency = await page_latency(base, paths, samples)
    loads = sum(p["n"] + 1 for p in latency.values())  # with each page's warm-up load
    cpu_page_ms = (service_cpu_s(web_pid) - cpu_before) * 1000 / loads
    clinic = await page_latency(base, pages(seeded, admin=False), samples, seeded["token"])
    scrape = await scrape_latency(f"http://127.0.0.1:{port}", samples)
    ingest = await ingest_while_browsing(port, web_pid, paths, tmp, seconds)
    return {
        "rows": seeded["rows"],
        "seed_s": seeded["seconds"],
        "pages": latency,
        "clinic_pages": clinic,
        "scrape": scrape,
        "cpu_per_page_ms": round(cpu_page_ms, 2),
        "ingest": ingest,
        # The CPU an operator's pages take from ingest, as a share of what ingest runs on at saturation.
        "operator_cpu_share": {
            pace: round((cpu_page_ms / pace) / (ingest["alone_rps"] * ingest["cpu_per_request_ms"]), 4)
            for pace in PACES_S
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """The console rows of the benchmark report."""
    worst = max(p["p95_ms"] for p in result["pages"].values())
    verdict = "met" if worst < 100 else f"missed ({worst / 100:.2f}x off)"
    ingest = result["ingest"]
    scale = (
        f"{result['rows']:,} deliveries, {LAST_HOUR:,} in the last hour, {CLINICS} clinics,"
        f" {DEAD_LETTERS:,} dead letters in one group"
    )
    lines = [
        f"| console page p50 / p95 as the admin, {scale} (ms): "
        + ", ".join(f"{name} {p['p50_ms']} / {p['p95_ms']}" for name, p in result["pages"].items())
        + f" | worst p95 {worst} | | | < 100: {verdict} |"
    ]
    if "clinic_pages" in result:
        clinic = result["clinic_pages"]
        worst_clinic = max(p["p95_ms"] for p in clinic.values())
        admin = result["pages"]
        ratios = {name: p["p95_ms"] / admin[name]["p95_ms"] for name, p in clinic.items()}
        worst_name = max(ratios, key=ratios.__getitem__)
        within = all(
            p["p95_ms"] <= max(CLINIC_RATIO_TARGET * admin[name]["p95_ms"], admin[name]["p95_ms"] + CLINIC_ALLOWANCE_MS)
            for name, p in clinic.items()
        )
        met = worst_clinic < 100 and within
        lines.append(
            "| console page p50 / p95 as a clinic, same log (ms): "
            + ", ".join(f"{name} {p['p50_ms']} / {p['p95_ms']}" for name, p in clinic.items())
            + f" | worst p95 {worst_clinic} | admin's, above | worst {ratios[worst_name]:.2f}x ({worst_name})"
            + f" | < 100 and <= {CLINIC_RATIO_TARGET}x (or + {CLINIC_ALLOWANCE_MS:g} ms): {'met' if met else 'missed'} |"
        )
    if "scrape" in result:
        scrape, health = result["scrape"]["/metrics"], result["scrape"]["/healthz"]
        lines.append(
            f"| a Prometheus scrape of /metrics at {result['rows']:,} deliveries, p50 / p95 (ms) | {scrape['p50_ms']}"
            f" / {scrape['p95_ms']} | | /healthz: {health['p50_ms']} / {health['p95_ms']} | |"
        )
    lines.append(
        f"| CPU of one console page, web + PostgreSQL (ms) | {result['cpu_per_page_ms']} | one ingested request:"
        f" {ingest['cpu_per_request_ms']} | | |"
    )
    for think_s, pace in ingest["paces"].items():
        target = f">= {RATIO_TARGET}: {'met' if pace['ratio'] >= RATIO_TARGET else 'missed'}"
        lines.append(
            f"| ingest while an operator loads a page every {think_s} s (accepted/s) | {pace['rps']} (their pages"
            f" p50 / p95 {pace['pages']['p50_ms']} / {pace['pages']['p95_ms']} ms) | alone: {ingest['alone_rps']}"
            f" (spread {ingest['alone_spread']:.0%})"
            f" | {pace['ratio']:.2f} (CPU share: {result['operator_cpu_share'][think_s]:.1%})"
            f" | {target if think_s == PACES_S[0] else 'stress, no target'} |"
        )
    return "\n".join(lines)


async def _standalone(rows: int, samples: int, seconds: int) -> dict[str, Any]:
    """A scratch database with ``rows`` deliveries, ``vapi-ingest serve``, then :func:`measure`."""
    import shutil
    import tempfile

    from tests.bench.datapath import drop_database, fresh_database, version_env
    from tests.bench.processes import free_port, start, stop, wait_http

    name, dsn, _org_id = await fresh_database(None)
    tmp = Path(tempfile.mkdtemp(prefix="vapi-bench-"))
    port = free_port()
    env = version_env(dsn, port, None, ADMIN_TOKEN=ADMIN_TOKEN, WEB_PROCESSES="2")
    try:
        seeded = await seed(dsn, rows)
        web = start([str(BIN), "serve"], env, tmp / "web.log")
        try:
            wait_http(port, "/readyz")
            return await measure(port, web.pid, seeded, tmp, samples=samples, seconds=seconds)
        finally:
            stop(web)
    finally:
        await drop_database(name)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """``python -m tests.bench.console [--rows N] [--samples N] [--seconds S]``: this measure alone."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="deliveries to seed (default 1,000,000)")
    parser.add_argument("--samples", type=int, default=100, help="loads of each page (default 100)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of each ingest run (default 5)")
    args = parser.parse_args()
    result = asyncio.run(_standalone(args.rows, args.samples, args.seconds))
    print(json.dumps(result, indent=2, default=str))
    print(markdown(result))


if __name__ == "__main__":
    main()
