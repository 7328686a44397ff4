"""Running the real `vapi-ingest` processes in tests: environment, start/stop, polling helpers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.helpers import REDIS_URL, SECRET, wait_until_sync

BIN = Path(sys.executable).with_name("vapi-ingest")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(db_dsn: str, redis_namespace: str) -> dict[str, str]:
    """The environment a user would export: test database, test Redis, HMAC secret, free ports."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAPI_", "PROMETHEUS"))},
        "DATABASE_URL": db_dsn,
        "REDIS_URL": REDIS_URL,
        "VAPI_WEBHOOK_SECRETS": SECRET,
        "PORT": str(free_port()),
        "WORKER_METRICS_PORT": str(free_port()),
        "SCHEDULER_METRICS_PORT": str(free_port()),
        "WORKER_PROCESSES": "2",
        "WORKER_THREADS": "2",
        "SWEEP_INTERVAL_S": "0.5",
        "LOG_FORMAT": "json",
    }


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.read().decode()


def wait_for(url: str, timeout_s: float = 20.0) -> str:
    """The body of ``url`` once it answers 2xx (polling while nothing listens yet).

    Raises:
        OSError: after ``timeout_s``, the last error: ``urllib.error.HTTPError`` for an answer that is not 2xx.
    """
    errors: list[OSError] = []

    def answered() -> str | None:
        try:
            return get(url)
        except OSError as exc:
            errors[:] = [exc]
            return None

    try:
        body: str = wait_until_sync(answered, timeout_s=timeout_s, interval_s=0.2, what=f"GET {url}")
    except AssertionError:
        if errors:
            raise errors[0] from None
        raise
    return body


def start(cmd: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``vapi-ingest <cmd>`` in its own process group, logging to ``log``."""
    with log.open("a") as out:  # the child holds its own copy of the descriptor
        return subprocess.Popen([str(BIN), cmd], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> bool:
    """Signal a process group; True if it exited in time (else it is SIGKILLed)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return True
    try:
        proc.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return False


def sql(env: dict[str, str], query: str) -> Any:
    """Run one statement against the test database and return the first value."""

    async def run() -> Any:
        conn = await asyncpg.connect(env["DATABASE_URL"])
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()

    return asyncio.run(run())


def sql_script(env: dict[str, str], script: str) -> None:
    """Run several statements (DDL for fault injection) against the test database."""

    async def run() -> None:
        conn = await asyncpg.connect(env["DATABASE_URL"])
        try:
            await conn.execute(script)
        finally:
            await conn.close()

    asyncio.run(run())


def wait_sql(env: dict[str, str], query: str, timeout_s: float = 30.0) -> None:
    """Poll until ``query`` returns something truthy."""
    wait_until_sync(lambda: sql(env, query), timeout_s=timeout_s, interval_s=0.2, what=query)


@contextmanager
def running(env: dict[str, str], logs: Path) -> Iterator[str]:
    """web, worker and scheduler started with the CLI; yields the webhook URL once web is ready.

    Afterwards each is stopped as systemd and honcho do (SIGTERM to its group),
    and any that does not stop within 15 s fails the test.
    """
    procs = {cmd: start(cmd, env, logs / f"{cmd}.log") for cmd in ("serve", "worker", "scheduler")}
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        yield f"http://127.0.0.1:{env['PORT']}/webhooks/vapi"
    finally:
        hung = [cmd for cmd, proc in procs.items() if not stop(proc)]
        assert [] == hung, f"did not stop within 15 s of SIGTERM: {hung}"


@pytest.fixture
def services(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The three processes running for an org that owns assistant asst-proc (the default org too)."""
    org = cli(env, "orgs", "create", "--name", "Process clinic", "--assistant-id", "asst-proc")
    assert 0 == org.returncode, org.stderr
    env = {**env, "VAPI_DEFAULT_ORG_ID": org.stdout.strip()}
    with running(env, tmp_path):
        yield env


@pytest.fixture
def fast_retries(env: dict[str, str]) -> dict[str, str]:
    """Two attempts, short backoff: failures dead-letter within a second."""
    env.update(RETRY_MAX_ATTEMPTS="2", RETRY_MIN_BACKOFF_MS="50", RETRY_MAX_BACKOFF_MS="100")
    return env


@pytest.fixture
def org_for_env(env: dict[str, str]) -> str:
    """An organization in the test database, created with the CLI."""
    result = cli(env, "orgs", "create", "--name", "Replay clinic")
    assert 0 == result.returncode, result.stderr
    return result.stdout.strip()


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None
    )
    assert found, f"{name} is needed for this test (Debian: postgresql)"
    return str(found)


@pytest.fixture
def private_postgres() -> Iterator[dict[str, object]]:
    """A PostgreSQL server of this test's own (initdb in a temp dir), which it may stop and start again."""
    import pwd
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="vapi-pg-"))
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(data, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    ctl = [*as_user, _pg_bin("pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log")]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c fsync=off"

    def up() -> None:
        subprocess.run([*ctl, "-o", options, "start"], check=True, capture_output=True)

    def down() -> None:
        subprocess.run([*ctl, "-m", "fast", "stop"], check=True, capture_output=True)

    up()
    yield {"url": f"postgresql://postgres@127.0.0.1:{port}/vapi_faults", "up": up, "down": down}
    subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(data, ignore_errors=True)
