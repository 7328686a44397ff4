"""The benchmark's report: each measure beside its baseline and its target, as a Markdown table."""

from __future__ import annotations

from tests.bench.console import markdown as console_markdown


def _verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    miss = (target / value if higher_is_better else value / target) if value else float("inf")
    return f"missed ({miss:.2f}x off)"


def _isolation_row(iso: dict) -> str:
    idle, busy, ratio = iso["idle"], iso["during_replay"], iso["ratio_p99"] or 0.0
    return (
        f"| live queue wait p50 / p99 during a 10,000 replay, {iso['live_rate_per_s']}/s live (ms) | "
        f"{busy['p50_ms']} / {busy['p99_ms']} | idle: {idle['p50_ms']} / {idle['p99_ms']} | {ratio:.2f} | "
        f"<= 2x idle: {_verdict(ratio, 2.0, higher_is_better=False)} |"
    )


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
        _isolation_row(r["replay_isolation"]),
        f"| peak RSS per web process at saturation (MB) | {', '.join(map(str, r['web_rss_mb']))} | | | <= 150: "
        f"{_verdict(max(r['web_rss_mb']), 150.0, higher_is_better=False)} |",
        f"| peak RSS per worker process (MB) | {', '.join(map(str, r['worker_rss_mb']))} | | | |",
        console_markdown(r["console"]),
        "",
        r["booking_table"].strip(),
    ]
    return "\n".join(rows)
