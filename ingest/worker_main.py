"""Entrypoints that Dramatiq's CLI imports in each worker process (``vapi-ingest worker`` runs it).

The worker process's composition root: it reads the environment and hands
the workers their resources, so ``workers/`` itself never does.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import dramatiq

from ingest import logs
from ingest.configs import bulk_concurrency, processing_config
from ingest.settings import Settings
from workers.actors import build_worker_broker


def setup_broker() -> None:
    """Build the broker with the worker's resources and declare the actors (``dramatiq ingest.worker_main:setup_broker``)."""
    settings = Settings.from_env()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    broker = build_worker_broker(
        settings.redis_url,
        settings.database_url,
        processing_config(settings),
        pool_max_size=max(2, settings.worker_threads),
        bulk_concurrency=bulk_concurrency(settings),
    )
    dramatiq.set_broker(broker)
    _ignore_repeated_sigterm()


def _ignore_repeated_sigterm() -> None:
    """Make a second SIGTERM harmless in a worker process.

    systemd (KillMode=control-group) and honcho signal every process of the
    group, and Dramatiq's parent forwards one more; Dramatiq treats the second
    as "kill now", which exits the main thread while worker threads still hold
    messages, and the process hangs. The first SIGTERM already stops the
    worker gracefully; a forced stop remains SIGKILL.

    This runs while Dramatiq boots the process (it imports the broker), so the
    first SIGTERM may already have reached Dramatiq's own handler: then every
    later one is the repeat (a worker stopped right after it started hung until
    SIGKILL). Whether it has is read from that handler's ``running`` flag
    (dramatiq.cli.worker_process, dramatiq 1.x).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    graceful = signal.getsignal(signal.SIGTERM)
    seen = _stopping(graceful)

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        if not seen and callable(graceful):
            seen = True
            graceful(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def _stopping(handler: object) -> bool:
    """Whether Dramatiq's worker-process SIGTERM handler has already begun a graceful stop."""
    code, cells = getattr(handler, "__code__", None), getattr(handler, "__closure__", None)
    if code is None or not cells or "running" not in code.co_freevars:
        return False
    return cells[code.co_freevars.index("running")].cell_contents is False


def serve_metrics() -> None:
    """Serve every worker process's metrics on ``WORKER_METRICS_PORT`` (a Dramatiq fork function).

    Worker processes write to ``PROMETHEUS_MULTIPROC_DIR``; this one process
    aggregates them, so several workers never clash on a port.
    """
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    settings = Settings.from_env()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(settings.worker_metrics_port, addr="0.0.0.0", registry=registry)
    while True:
        time.sleep(3600)
