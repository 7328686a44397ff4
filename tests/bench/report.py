"""The benchmark's report: each measure beside its baseline and its target, as a Markdown table."""

from __future__ import annotations

from tests.bench.console import markdown as console_markdown


def _verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    miss = (target / value if higher_is_better else value / target) if value else float("inf")
    return f"missed ({miss:.2f}x off)"


def _rows(v: dict, r: dict) -> dict[str, tuple[str, float | None]]:
    """One version's figures as ``name -> (shown text, ratio or value checked against the target)``."""
    ingest, two, fixed, drain, fresh = v["ingest"], v["ingest_2"], v["fixed_load"], v["drain"], v["freshness_ms"]
    busy = v["fixed_load_with_workers"]
    pg, fair = v["pg_per_delivery"], v["fairness"]
    vs_pg = ingest["accepted_per_s"] / r["pgbench_tps"]
    vs_bare = ingest["accepted_per_s"] / r["bare_1"]["rps"]
    vs_bare2 = two["accepted_per_s"] / r["bare_2"]["rps"]
    vs_noop = drain["per_s"] / r["dramatiq_noop_per_s"]
    idle_p99 = fair["idle"]["p99_ms"]
    return {
        "ingest_vs_pgbench": (f"{ingest['accepted_per_s']:.0f}/s ({vs_pg:.2f}x)", vs_pg),
        "ingest_vs_bare": (f"{ingest['accepted_per_s']:.0f}/s ({vs_bare:.2f}x)", vs_bare),
        "ingest_2": (f"{two['accepted_per_s']:.0f}/s ({vs_bare2:.2f}x)", None),
        "saturation_latency": (f"{ingest['p50_ms']:.1f} / {ingest['p99_ms']:.1f} ms, {ingest['errors']} errors", None),
        "p99_at_1000": (
            f"{fixed['p50_ms']:.1f} / {fixed['p99_ms']:.1f} ms ({fixed['errors']} errors)",
            fixed["p99_ms"],
        ),
        "p99_at_1000_workers": (f"{busy['p50_ms']:.1f} / {busy['p99_ms']:.1f} ms ({busy['errors']} errors)", None),
        "drain_vs_noop": (f"{drain['per_s']}/s of {drain['deliveries']} ({vs_noop:.2f}x)", vs_noop),
        "drain_per_s": (f"{drain['per_s']}/s", drain["per_s"]),
        "freshness_p99": (f"{fresh['p50']} / {fresh['p99']} ms (max {fresh['max']})", fresh["p99"]),
        "replay_10k_s": (f"{v['replay_10k_s']} s", v["replay_10k_s"]),
        "fair_burst": (
            f"{fair['during_burst']['p99_ms']} ms vs idle {idle_p99} ({fair['burst_ratio_p99'] or 0:.2f}x;"
            f" burst posted in {fair['burst_post_s']} s)",
            fair["burst_ratio_p99"] or 0.0,
        ),
        "fair_backlog": (
            f"{fair['during_backlog']['p99_ms']} ms vs idle {idle_p99} ({fair['backlog_ratio_p99'] or 0:.2f}x)",
            fair["backlog_ratio_p99"] or 0.0,
        ),
        "fair_replay": (
            f"{fair['during_replay']['p99_ms']} ms vs idle {idle_p99} ({fair['ratio_p99'] or 0:.2f}x;"
            f" replay {fair['replay_s']} s)",
            fair["ratio_p99"] or 0.0,
        ),
        "wal": (f"{pg['wal_bytes']:.0f} B", None),
        "row_versions": (f"{pg['row_versions']} (log {pg['log_row_versions']}, HOT {pg['log_hot_share']:.0%})", None),
        "commits": (f"{pg['commits']}", None),
        "indexes": (f"{pg['log_indexes']:.0f}", None),
        "web_rss": (f"{max(ingest['rss_mb'] + two['rss_mb']):.1f} MB", max(ingest["rss_mb"] + two["rss_mb"])),
        "worker_rss": (f"{max(v['worker_rss_mb']):.1f} MB", None),
    }


#: (row name, label, reference baseline shown, target: (threshold, higher is better) or None)
_MEASURES = [
    ("ingest_vs_pgbench", "ingest at saturation, 1 web process vs pgbench insert", "pgbench", (1.0, True)),
    ("ingest_vs_bare", "ingest at saturation, 1 web process vs bare aiohttp", "bare_1", (0.5, True)),
    ("ingest_2", "ingest at saturation, 2 web processes vs bare aiohttp x 2", "bare_2", None),
    ("saturation_latency", "saturation latency p50 / p99, 1 web process", "bare_1_latency", None),
    ("p99_at_1000", "accept latency at 1,000 req/s offered, web process alone, p50 / p99", None, (25.0, False)),
    ("p99_at_1000_workers", "the same with 2 worker processes draining meanwhile", None, None),
    ("drain_vs_noop", "drain of the ingested backlog, 2 worker processes vs no-op actor", "noop", (1.0, True)),
    ("drain_per_s", "drain, deliveries/s", None, (2000.0, True)),
    ("freshness_p99", "receipt to completed at 1,000/s, p50 / p99", None, (250.0, False)),
    ("replay_10k_s", "replay 10,000 dead letters to completed", None, (5.0, False)),
    (
        "fair_burst",
        "quiet clinic's live queue wait p99 (50/s) during another clinic's burst of 5,000 reports",
        None,
        (2.0, False),
    ),
    (
        "fair_backlog",
        "the same while another clinic's backlog of 5,000 reports drains (posted while workers were stopped)",
        None,
        (2.0, False),
    ),
    (
        "fair_replay",
        "quiet clinic's live queue wait p99 (50/s) during a replay of another clinic's 10,000 dead letters",
        None,
        (2.0, False),
    ),
    ("wal", "PostgreSQL WAL bytes per delivery (at 1,000/s, end to end)", None, None),
    ("row_versions", "row versions written per delivery", None, None),
    ("commits", "commits per delivery (this database, every process)", None, None),
    ("indexes", "indexes on webhook_delivery_log", None, None),
    ("web_rss", "peak RSS per web process at saturation", None, (150.0, False)),
    ("worker_rss", "peak RSS per worker process", None, None),
]


def _reference(key: str | None, r: dict) -> str:
    if key == "pgbench":
        return f"{r['pgbench_tps']:.0f} tps"
    if key in ("bare_1", "bare_2"):
        return f"{r[key]['rps']:.0f} rps"
    if key == "bare_1_latency":
        return f"{r['bare_1']['p50_ms']:.1f} / {r['bare_1']['p99_ms']:.1f} ms"
    if key == "noop":
        return f"{r['dramatiq_noop_per_s']} messages/s"
    return ""


def markdown(r: dict) -> str:
    this = _rows(r["this"], r)
    base = _rows(r["baseline"], r) if "baseline" in r else None
    base_name = f"baseline {r.get('baseline_commit', '')}".strip()
    rows = [
        f"Service benchmark, {r['date']}, {r['cores']} cores, PostgreSQL {r['postgres']}, "
        f"{r['seconds_per_run']} s per run, mean body {r['mean_body_bytes']} bytes, 2 worker processes x 8 threads",
        "",
        f"| measure | this checkout | {base_name if base else 'baseline ref'} | reference in the same run | target |",
        "|---|---|---|---|---|",
    ]
    for key, label, reference, target in _MEASURES:
        text, value = this[key]
        verdict = ""
        if target is not None and value is not None:
            threshold, higher = target
            verdict = f"{'>=' if higher else '<='} {threshold:g}: {_verdict(value, threshold, higher_is_better=higher)}"
        rows.append(f"| {label} | {text} | {base[key][0] if base else ''} | {_reference(reference, r)} | {verdict} |")
    if "console" in r:
        rows += [console_markdown(r["console"]), "", r["booking_table"].strip()]
    return "\n".join(rows)
