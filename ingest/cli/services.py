"""The service commands: ``migrate``, ``serve``, ``worker``, ``scheduler``."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from ingest.cli.support import run_async as _run
from ingest.cli.support import settings as _settings


@click.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations (a no-op when up to date)."""
    from db.errors import MigrationError
    from db.migrate import migrate as run_migrations

    settings = _settings()
    try:
        applied = _run(run_migrations(settings.database_url))
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


@click.command()
def serve() -> None:
    """Run the web process(es): POST /webhooks/vapi, the admin API, /healthz, /readyz, /health, /metrics."""
    settings = _settings()
    if settings.auth_scheme == "none":
        click.echo("WARNING: VAPI_AUTH_SCHEME=none: requests are NOT authenticated", err=True)
    from ingest.prefork import PreforkError, serve_forked
    from ingest.prefork import serve as serve_one

    if settings.web_processes == 1:
        serve_one(settings, reuse_port=False)
        return
    try:
        serve_forked(settings)
    except PreforkError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
def worker() -> None:
    """Run Dramatiq worker processes (WORKER_PROCESSES x WORKER_THREADS) and their metrics port."""
    settings = _settings()
    metrics_dir = Path(tempfile.gettempdir()) / f"vapi-ingest-worker-metrics-{settings.worker_metrics_port}"
    # Stale files from a previous run would resurrect dead processes' counters.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Dramatiq's Redis consumer stops fetching once `prefetch` messages are
    # unacked, then sleeps with backoff up to the worker timeout (defaults:
    # 2 x threads, 1 s). Larger prefetch, shorter sleeps: the 20,000-delivery
    # drain benchmark went from 24.7 s to 23.0 s.
    os.environ.setdefault("dramatiq_queue_prefetch", str(settings.worker_threads * 8))
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    dramatiq_bin = shutil.which("dramatiq") or str(Path(sys.executable).with_name("dramatiq"))
    argv = [
        dramatiq_bin,
        "ingest.worker_main:setup_broker",
        "--processes",
        str(settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
        "--queues",
        "deliveries",
        "--fork-function",
        "ingest.worker_main:serve_metrics",
        "--skip-logging",
    ]
    os.execv(dramatiq_bin, argv)


@click.command()
def scheduler() -> None:
    """Run the scheduler process: the sweeper every SWEEP_INTERVAL_S."""
    from ingest import logs
    from ingest.scheduler_main import run

    settings = _settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    _run(run(settings))


COMMANDS = (migrate, serve, worker, scheduler)
