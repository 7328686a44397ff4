"""The service commands: ``migrate``, ``serve``, ``worker``, ``scheduler``."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import click
import structlog

from ingest.cli.support import run_async as _run
from ingest.cli.support import settings as _settings
from ingest.preflight import Reachability, Unavailable, check_port, check_services
from ingest.settings import Settings
from workers.broker import QUEUES


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


def _start(
    settings: Settings, process: str, ports: dict[str, int], *, needs_redis: bool = False, **details: object
) -> Reachability:
    """Check ports and services, then log the process's one start-up line.

    Raises:
        Unavailable: a port is in use, or Redis is unreachable and ``needs_redis``.
        ConfigError: PostgreSQL or Redis refused what its URL says.
    """
    from ingest import logs

    logs.configure(level=settings.log_level, fmt=settings.log_format)
    for variable, port in ports.items():
        check_port(variable, port)
    found = _run(check_services(settings))
    if needs_redis and found.redis is not None:
        raise Unavailable(f"REDIS_URL: {found.redis}")
    log = structlog.get_logger("ingest.cli")
    ports_field = {variable.lower(): port for variable, port in ports.items()}
    # A warning when a service is unreachable: the process goes on degraded, and LOG_LEVEL=WARNING must show it.
    say = log.info if found.database is None and found.redis is None else log.warning
    say(f"{process}_starting", version=version("vapi-ingest"), **ports_field, **details, **found.fields())
    if found.default_org_missing:
        log.warning(
            "default_org_missing",
            default_org_id=str(settings.default_org_id),
            consequence="messages no assistant or number routes are quarantined",
            fix="vapi-ingest orgs list, then set VAPI_DEFAULT_ORG_ID",
        )
    return found


@click.command()
def serve() -> None:
    """Run the web process(es): POST /webhooks/vapi, the admin API, /healthz, /readyz, /health, /metrics."""
    settings = _settings(webhook=True)
    _start(
        settings,
        "web",
        {"PORT": settings.port},
        processes=settings.web_processes,
        auth_scheme=settings.auth_scheme,
        admin_api="admin token and org tokens" if settings.admin_token else "org tokens only",
    )
    if settings.console_enabled and settings.console_session_key is None:
        # Made once here, before the web processes fork, so all of them read each other's cookies.
        settings = dataclasses.replace(settings, console_session_key=os.urandom(32))
        structlog.get_logger("ingest.cli").warning(
            "console_session_key_generated",
            consequence="console sessions end when serve restarts",
            fix="set CONSOLE_SESSION_KEY",
        )
    if settings.auth_scheme == "none":
        structlog.get_logger("ingest.cli").warning(
            "unauthenticated", detail="VAPI_AUTH_SCHEME=none: requests are NOT authenticated"
        )
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
    # Without Redis a worker has nothing to take; with PostgreSQL down it waits and recovers.
    _start(
        settings,
        "worker",
        {"WORKER_METRICS_PORT": settings.worker_metrics_port},
        needs_redis=True,
        processes=settings.worker_processes,
        threads=settings.worker_threads,
    )
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
        *QUEUES,
        "--fork-function",
        "ingest.worker_main:serve_metrics",
        "--skip-logging",
    ]
    os.execv(dramatiq_bin, argv)


@click.command()
def scheduler() -> None:
    """Run the scheduler process: the sweeper every SWEEP_INTERVAL_S, retention daily."""
    from ingest.scheduler_main import run

    settings = _settings()
    _start(
        settings,
        "scheduler",
        {"SCHEDULER_METRICS_PORT": settings.scheduler_metrics_port},
        sweep_interval_s=settings.sweep_interval_s,
        retention_days=settings.retention_days,
    )
    _run(run(settings))


COMMANDS = (migrate, serve, worker, scheduler)
