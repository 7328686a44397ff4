"""The ``vapi-ingest`` command: services (serve, worker, scheduler), migrations, tenants, a sender.

Every subcommand reads the same environment as the services (plus a
``.env`` file in the working directory, if present; real environment
variables win) and exits non-zero with one line on bad input.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import click
from dotenv import load_dotenv

from db.errors import AlreadyMapped, OrgNotFound
from db.types import Conn
from ingest import cli_ops
from ingest.cli_support import run_async as _run
from ingest.cli_support import settings as _settings
from ingest.cli_support import uuid_option as _uuid
from ingest.cli_support import with_conn as _with_conn
from ingest.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Receive Vapi server messages, store them once, process them with Dramatiq workers."""
    load_dotenv(Path.cwd() / ".env", override=False)


for _command in cli_ops.COMMANDS:
    main.add_command(_command)


@main.command()
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


@main.command()
def serve() -> None:
    """Run the web process(es): POST /webhooks/vapi, the admin API, /healthz, /readyz, /health, /metrics."""
    settings = _settings()
    if settings.auth_scheme == "none":
        click.echo("WARNING: VAPI_AUTH_SCHEME=none: requests are NOT authenticated", err=True)
    if settings.web_processes == 1:
        _serve(settings, reuse_port=False)
    else:
        _serve_forked(settings)


def _serve(settings: Settings, *, reuse_port: bool) -> None:
    from aiohttp import web

    from ingest import logs
    from ingest.app import create_app

    logs.configure(level=settings.log_level, fmt=settings.log_format)
    web.run_app(
        create_app(settings),
        port=settings.port,
        access_log=None,
        shutdown_timeout=30,
        print=None,
        # aiohttp runs this timer from the moment a connection opens and while headers are
        # incomplete, so it is the header timeout too (its default is an hour).
        keepalive_timeout=settings.keepalive_timeout_s,
        reuse_port=reuse_port,
        loop=_new_event_loop(),
    )


def _serve_forked(settings: Settings) -> None:
    """WEB_PROCESSES children on one port (SO_REUSEPORT), metrics aggregated across them.

    The parent only forwards SIGTERM/SIGINT and waits; each child shuts down
    gracefully on its own. prometheus-client's multiprocess mode needs its
    directory before the library is imported, hence before the fork.
    """
    import signal

    if "prometheus_client" in sys.modules:
        raise click.ClickException("internal: prometheus_client imported before the web processes forked")
    metrics_dir = Path(tempfile.gettempdir()) / f"vapi-ingest-web-metrics-{settings.port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    children = []
    for _ in range(settings.web_processes):
        pid = os.fork()
        if pid == 0:
            # A group of its own: a signal to the parent's group (honcho, a terminal) reaches the
            # parent alone, which forwards it once; aiohttp treats a second SIGTERM as "stop now".
            os.setpgid(0, 0)
            code = 0
            try:
                _serve(settings, reuse_port=True)
            except BaseException:  # noqa: BLE001 - a child must never return into the parent's code
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status))
    sys.exit(worst)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv): +25 % requests/s for the web process on the ingest benchmark."""
    import uvloop

    return uvloop.new_event_loop()


@main.command()
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


@main.command()
def scheduler() -> None:
    """Run the scheduler process: the sweeper every SWEEP_INTERVAL_S."""
    from ingest import logs
    from ingest.scheduler_main import run

    settings = _settings()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    _run(run(settings))


@main.group()
def orgs() -> None:
    """Manage organizations (tenants)."""


@orgs.command("create")
@click.option("--name", required=True, help="Display name of the clinic.")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/London.")
@click.option("--region", default="US", show_default=True, help="Default region for phone numbers (ISO 3166).")
@click.option("--assistant-id", default=None, help="Vapi assistant id: answers assistant-request and routes its calls.")
def orgs_create(name: str, tz: str, region: str, assistant_id: str | None) -> None:
    """Create an organization and print its id."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from db import orgs as orgs_db

    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"{tz!r} is not an IANA time zone", param_hint="--timezone") from None
    if len(region) != 2 or not region.isalpha():
        raise click.BadParameter(f"{region!r} is not a 2-letter region code", param_hint="--region")

    async def create(conn: Conn) -> uuid.UUID:
        async with conn.transaction():
            org_id = await orgs_db.create_org(
                conn, name=name.strip(), timezone=tz, region=region, assistant_id=assistant_id
            )
            if assistant_id:
                await orgs_db.add_agent(conn, org_id, assistant_id)
            return org_id

    try:
        click.echo(_run(_with_conn(create)))
    except AlreadyMapped as exc:
        raise click.ClickException(str(exc)) from None


def _add_route(kind: str, org_id: uuid.UUID, vapi_id: str) -> None:
    from db import orgs as orgs_db

    add = orgs_db.add_agent if kind == "assistant" else orgs_db.add_phone_number
    try:
        click.echo(_run(_with_conn(lambda conn: add(conn, org_id, vapi_id))))
    except (AlreadyMapped, OrgNotFound) as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def agents() -> None:
    """Map Vapi assistants to organizations."""


@agents.command("add")
@click.option("--org", "org_id", required=True, callback=_uuid, help="Organization id.")
@click.option("--assistant-id", required=True, help="Vapi assistant id.")
def agents_add(org_id: uuid.UUID, assistant_id: str) -> None:
    """Route messages of a Vapi assistant to an organization."""
    _add_route("assistant", org_id, assistant_id)


@main.group()
def numbers() -> None:
    """Map Vapi phone numbers to organizations."""


@numbers.command("add")
@click.option("--org", "org_id", required=True, callback=_uuid, help="Organization id.")
@click.option("--phone-number-id", required=True, help="Vapi phone number id (not the E.164 number).")
def numbers_add(org_id: uuid.UUID, phone_number_id: str) -> None:
    """Route messages of a Vapi phone number to an organization."""
    _add_route("phone number", org_id, phone_number_id)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--url", default=None, help="Receiver URL [default: http://127.0.0.1:$PORT/webhooks/vapi].")
@click.option("--concurrency", default=8, show_default=True, type=click.IntRange(1, 1000))
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 100000))
def send(paths: tuple[Path, ...], url: str | None, concurrency: int, repeat: int) -> None:
    """Post payload files (or directories of *.json) signed as Vapi would; print a summary."""
    import json

    from ingest.sender import collect_files
    from ingest.sender import send as send_files

    settings = _settings()
    try:
        files = collect_files(list(paths))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    target = url or f"http://127.0.0.1:{settings.port}/webhooks/vapi"
    report = asyncio.run(send_files(settings, files, target, concurrency=concurrency, repeat=repeat))
    for name, reply in report.tool_replies:
        click.echo(f"{name}: {json.dumps(reply)}")
    for name, error in report.errors[:5]:
        click.echo(f"{name}: {error}", err=True)
    if len(report.errors) > 5:
        click.echo(f"... and {len(report.errors) - 5} more request(s) failed", err=True)
    summary = ", ".join(f"{status}: {n}" for status, n in sorted(report.statuses.items()))
    if report.errors:
        summary = ", ".join(filter(None, [summary, f"no answer: {len(report.errors)}"]))
    click.echo(f"sent {len(files) * repeat} request(s) to {target}; {summary}")
    if report.errors or any(status >= 300 for status in report.statuses):
        sys.exit(1)
