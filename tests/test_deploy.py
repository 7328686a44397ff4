"""deploy/: Prometheus config and alert rules (promtool), the Grafana dashboard, systemd units, Vapi tools."""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from tests.helpers import system_tool

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"


@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")],
)
def test_promtool_accepts_config_rules_and_alert_unit_tests(args):
    """promtool validates the scrape config and rules, and every alert's unit test passes."""
    result = subprocess.run(
        [system_tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )

    assert 0 == result.returncode, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_line():
    """Each alert in alerts.yml is exercised in alerts_test.yml and has a runbook entry in the README."""
    alerts = re.findall(r"- alert: (\w+)", (PROMETHEUS / "alerts.yml").read_text())
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts_test.yml").read_text()))
    readme = (DEPLOY.parent / "README.md").read_text()

    assert len(alerts) == 8
    assert set(alerts) == tested
    for alert in alerts:
        assert f"**{alert}**" in readme, alert


def _metric_names(text: str) -> set[str]:
    return {m for m in re.findall(r"\b(vapi_[a-z_]+)", text)}


def test_every_metric_in_the_dashboard_and_alerts_is_exposed():
    """Names used by the dashboard and alert rules exist in the service's exposition (web, workers, scheduler)."""
    import ingest.app  # noqa: F401 - registers the web and worker metrics in this process
    import workers.scheduler  # noqa: F401

    exposed = set()
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("# TYPE vapi_"):
            name, kind = line.split()[2:4]
            exposed.add(name)
            if kind == "histogram":
                exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter":
                exposed.add(f"{name}_total" if not name.endswith("_total") else name)
    used = _metric_names((DEPLOY / "grafana" / "dashboard.json").read_text())
    used |= _metric_names((PROMETHEUS / "alerts.yml").read_text())

    assert used, "no metric names found"
    assert set() == used - exposed


def test_dashboard_is_grafana_json_with_the_expected_panels():
    """The dashboard parses and covers throughput, latency, outcomes, dead letters and booking outcomes."""
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])

    for metric in (
        "vapi_webhooks_received_total",
        "vapi_webhook_request_duration_seconds_bucket",
        "vapi_deliveries_processed_total",
        "vapi_dead_letters",
        "vapi_booking_attempts_total",
    ):
        assert metric in exprs


def test_systemd_units_verify():
    """Each unit parses, runs its vapi-ingest command, and passes systemd-analyze verify when it is available."""
    binary = str(Path(sys.executable).with_name("vapi-ingest"))
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {"vapi-ingest-web.service", "vapi-ingest-worker.service", "vapi-ingest-scheduler.service"} == {
        u.name for u in units
    }
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert parser["Service"]["ExecStart"].split()[-1] in ("serve", "worker", "scheduler")
    analyze = system_tool("systemd-analyze")
    # Verify copies whose ExecStart points at this checkout's binary (the real path is /opt/...).
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"vapi-units-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    copies = []
    for unit in units:
        copy = tmp / unit.name
        copy.write_text(unit.read_text().replace("/opt/vapi-ingest/.venv/bin/vapi-ingest", binary))
        copies.append(str(copy))
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=60)
    shutil.rmtree(tmp, ignore_errors=True)
    assert 0 == result.returncode, result.stdout + result.stderr


def _local_services(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a copy of deploy/local/services.sh in a scratch checkout (it works on the checkout it lives in)."""
    script = tmp_path / "deploy" / "local" / "services.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "local" / "services.sh", script)
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        ["bash", str(script), *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )


def test_local_env_records_the_servers_used_and_keeps_what_is_there(tmp_path):
    """`services.sh env` writes a secret, an admin token, a console session key, DATABASE_URL and REDIS_URL once;
    a value already in .env is kept."""
    (tmp_path / ".env").write_text("REDIS_URL=redis://cache:6379/3\n")

    first = _local_services(tmp_path, "env", env={"DATABASE_URL": "postgresql://app@db:5432/clinic"})
    second = _local_services(tmp_path, "env")
    written = (tmp_path / ".env").read_text().splitlines()

    assert 0 == first.returncode, first.stderr
    assert "wrote DATABASE_URL to .env" in first.stdout and "REDIS_URL" not in first.stdout
    assert "" == second.stdout
    assert ["redis://cache:6379/3"] == [v.split("=", 1)[1] for v in written if v.startswith("REDIS_URL=")]
    assert ["postgresql://app@db:5432/clinic"] == [v.split("=", 1)[1] for v in written if v.startswith("DATABASE_URL=")]
    assert 1 == sum(v.startswith("VAPI_WEBHOOK_SECRETS=") for v in written)
    assert 1 == sum(v.startswith("ADMIN_TOKEN=") and len(v) >= len("ADMIN_TOKEN=") + 16 for v in written)
    keys = [v.split("=", 1)[1] for v in written if v.startswith("CONSOLE_SESSION_KEY=")]
    assert 1 == len(keys) and 32 == len(base64.urlsafe_b64decode(keys[0]))  # what serve accepts (settings.py)


def test_local_stop_says_when_nothing_ran_and_clean_removes_data_and_env(tmp_path):
    """With no server started under .data, `down` says so; `clean` removes .data and .env and names them."""
    (tmp_path / ".env").write_text("VAPI_WEBHOOK_SECRETS=x\n")
    (tmp_path / ".data").mkdir()
    (tmp_path / ".data" / "redis.log").write_text("old\n")

    down = _local_services(tmp_path, "down")
    clean = _local_services(tmp_path, "clean")

    assert 0 == down.returncode and "nothing to stop" in down.stdout
    assert 0 == clean.returncode
    assert "removed .data" in clean.stdout and "removed .env" in clean.stdout
    assert not (tmp_path / ".data").exists() and not (tmp_path / ".env").exists()
