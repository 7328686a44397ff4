"""The web process: one aiohttp server, or WEB_PROCESSES forked children sharing its port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ingest.errors import IngestError
from ingest.settings import Settings


class PreforkError(IngestError):
    """The web processes could not be forked as configured; the message says why."""


def serve(settings: Settings, *, reuse_port: bool) -> None:
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


def serve_forked(settings: Settings) -> None:
    """WEB_PROCESSES children on one port (SO_REUSEPORT), metrics aggregated across them.

    The parent only forwards SIGTERM/SIGINT and waits; each child shuts down
    gracefully on its own. prometheus-client's multiprocess mode needs its
    directory before the library is imported, hence before the fork.
    """
    import signal

    if "prometheus_client" in sys.modules:
        raise PreforkError("internal: prometheus_client imported before the web processes forked")
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
                serve(settings, reuse_port=True)
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
