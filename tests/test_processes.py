"""The Procfile's processes as a user runs them: `vapi-ingest` serve, worker and scheduler, and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, SECRET, corpus_files

BIN = Path(sys.executable).with_name("vapi-ingest")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(db_dsn: str, redis_namespace: str) -> dict[str, str]:
    """The environment a user would export: test database, test Redis, HMAC secret, free ports."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAPI_", "PROMETHEUS"))},
        "DATABASE_URL": db_dsn,
        "REDIS_URL": REDIS_URL,
        "VAPI_WEBHOOK_SECRETS": SECRET,
        "PORT": str(_free_port()),
        "WORKER_METRICS_PORT": str(_free_port()),
        "WORKER_PROCESSES": "2",
        "WORKER_THREADS": "2",
        "SWEEP_INTERVAL_S": "0.5",
        "LOG_FORMAT": "json",
    }


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.read().decode()


def _wait_for(url: str, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _get(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def services(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """web, worker and scheduler started with the CLI, stopped with SIGTERM."""
    org = _cli(env, "orgs", "create", "--name", "Process clinic", "--assistant-id", "asst-proc")
    assert 0 == org.returncode, org.stderr
    env = {**env, "VAPI_DEFAULT_ORG_ID": org.stdout.strip()}
    procs = [
        subprocess.Popen([str(BIN), cmd], env=env, stdout=(tmp_path / f"{cmd}.log").open("w"), stderr=subprocess.STDOUT,
                         start_new_session=True)  # fmt: skip
        for cmd in ("serve", "worker", "scheduler")
    ]
    try:
        _wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        yield env
    finally:
        # As systemd and honcho do: SIGTERM to every process of each group.
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        hung = []
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                hung.append(p.args[1])
                os.killpg(p.pid, signal.SIGKILL)
        assert [] == hung, f"did not stop within 15 s of SIGTERM: {hung}"


def _metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_send_corpus_through_the_real_processes(services):
    """`vapi-ingest send` on the corpus: all 2xx, all processed by worker processes, counted on both metrics ports."""
    files = corpus_files()
    env = services

    sent = _cli(env, "send", str(files[0].parent))

    assert 0 == sent.returncode, sent.stdout + sent.stderr
    assert f"sent {len(files)} request(s)" in sent.stdout
    deadline = time.monotonic() + 30
    while True:
        web = _get(f"http://127.0.0.1:{env['PORT']}/metrics")
        if _metric(web, 'vapi_deliveries{status="pending"}') == 0 and _metric(web, 'vapi_deliveries{status="processing"}') == 0:
            break
        assert time.monotonic() < deadline, "deliveries still pending after 30 s"
        time.sleep(0.3)
    workers = _wait_for(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics")
    assert _metric(web, 'vapi_deliveries{status="completed"}') > 0
    assert 0 == _metric(web, 'vapi_deliveries{status="dead_letter"}')
    assert _metric(workers, 'vapi_deliveries_processed_total{outcome="completed"') > 0
    assert _metric(web, "vapi_webhooks_received_total") == len(files)

    again = _cli(env, "send", str(files[0].parent))

    assert 0 == again.returncode
    web = _get(f"http://127.0.0.1:{env['PORT']}/metrics")
    assert _metric(web, 'vapi_webhooks_received_total{outcome="accepted"') == _metric(
        web, 'vapi_webhooks_received_total{outcome="duplicate"'
    )


def test_cli_commands_print_ids_and_fail_with_one_line(env):
    """orgs/agents/numbers print ids; bad input exits non-zero with one clear line."""
    org = _cli(env, "orgs", "create", "--name", "Clinic", "--timezone", "Europe/Paris", "--region", "FR")
    assert 0 == org.returncode, org.stderr
    org_id = org.stdout.strip()

    assert 0 == _cli(env, "agents", "add", "--org", org_id, "--assistant-id", "a-1").returncode
    assert 0 == _cli(env, "numbers", "add", "--org", org_id, "--phone-number-id", "pn-1").returncode
    for args, reason in [
        (("orgs", "create", "--name", "X", "--timezone", "Mars/Olympus"), "IANA"),
        (("agents", "add", "--org", "nope", "--assistant-id", "a"), "not a UUID"),
        (("agents", "add", "--org", org_id, "--assistant-id", "a-1"), "already belongs"),
        (("numbers", "add", "--org", "00000000-0000-0000-0000-000000000000", "--phone-number-id", "p"), "no organization"),
        (("send", "/no/such/dir"), "no such file"),
    ]:
        result = _cli(env, *args)
        assert 0 != result.returncode, args
        assert reason in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_bad_setting_stops_start_up_with_one_line(env):
    """A malformed variable stops `serve` before it starts, naming the variable."""
    result = _cli({**env, "VAPI_HMAC_ALGORITHM": "md5"}, "serve")

    assert 0 != result.returncode
    assert "VAPI_HMAC_ALGORITHM" in result.stderr
    assert 1 == len(result.stderr.strip().splitlines())


def test_migrate_twice_is_a_no_op(env):
    """`vapi-ingest migrate` on a migrated database applies nothing."""
    result = _cli(env, "migrate")

    assert 0 == result.returncode
    assert "applied 0 migration(s)" in result.stdout
