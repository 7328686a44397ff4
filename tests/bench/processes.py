"""Starting, watching and stopping the benchmark's processes: ports, RSS, process groups, readiness."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def start(cmd: list[str], env: dict[str, str], log: Path, *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, output to ``log``. ``cwd`` matters to ``dramatiq``, which imports from it."""
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_http(port: int, path: str = "/healthz", timeout_s: float = 30) -> None:

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def cpu_s(pids: list[int]) -> float:
    """User plus system CPU seconds used so far by these processes (one that has exited counts 0)."""
    total_ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total_ticks / os.sysconf("SC_CLK_TCK")


def service_cpu_s(pid: int) -> float:
    """CPU seconds so far of a process and its children, plus every local PostgreSQL process (the
    service's queries run there); the load generator is not counted."""
    postgres = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                postgres.append(int(comm.parent.name))
        except OSError:
            continue
    return cpu_s([pid, *children(pid), *postgres])
