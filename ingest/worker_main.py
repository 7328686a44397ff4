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
from ingest.configs import processing_config
from ingest.settings import Settings
from workers.actors import WorkerResources, declare_actors
from workers.broker import build_broker


def setup_broker() -> None:
    """Build the broker with the worker's resources and declare the actors (``dramatiq ingest.worker_main:setup_broker``)."""
    settings = Settings.from_env()
    logs.configure(level=settings.log_level, fmt=settings.log_format)
    resources = WorkerResources(
        settings.database_url,
        processing_config(settings),
        pool_max_size=max(2, settings.worker_threads),
        replay_concurrency=settings.replay_concurrency,
    )
    broker = build_broker(settings.redis_url, extra_middleware=[resources])
    dramatiq.set_broker(broker)
    declare_actors(broker, resources)
    _ignore_repeated_sigterm()


def _ignore_repeated_sigterm() -> None:
    """Make a second SIGTERM harmless in a worker process.

    systemd (KillMode=control-group) and honcho signal every process of the
    group, and Dramatiq's parent forwards one more; Dramatiq treats the second
    as "kill now", which exits the main thread while worker threads still hold
    messages, and the process hangs. The first SIGTERM already stops the
    worker gracefully; a forced stop remains SIGKILL.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    graceful = signal.getsignal(signal.SIGTERM)
    seen = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal seen
        if not seen and callable(graceful):
            seen = True
            graceful(signum, frame)

    signal.signal(signal.SIGTERM, handler)


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
