"""The Procfile's processes as a user runs them: `vapi-ingest` serve, worker and scheduler, and the CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from tests.helpers import NOTHING_LEFT_TO_RUN, SECRET, corpus_files, found, metric, system_tool, wait_until_sync
from tests.procs import BIN, cli, free_port, get, sql, wait_for, wait_sql


def test_send_corpus_through_the_real_processes(services, tmp_path):
    """`vapi-ingest send` on the corpus: all 2xx, all processed by worker processes, counted on both metrics ports,
    and no secret (the webhook secret, payload tokens) in any process's log."""
    files = corpus_files()
    env = services

    sent = cli(env, "send", str(files[0].parent))

    assert 0 == sent.returncode, sent.stdout + sent.stderr
    assert f"sent {len(files)} request(s)" in sent.stdout

    def settled() -> str | None:
        web = get(f"http://127.0.0.1:{env['PORT']}/metrics")
        # completed follows PostgreSQL's statistics, which catch up within about a second.
        done = (
            metric(web, "vapi_deliveries", status="pending") == 0
            and metric(web, "vapi_deliveries", status="processing") == 0
            and metric(web, "vapi_deliveries", status="completed") > 0
        )
        return web if done else None

    web = wait_until_sync(settled, timeout_s=30, interval_s=0.3, what="every delivery processed")
    workers = wait_for(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics")
    assert metric(web, "vapi_deliveries", status="completed") > 0
    assert 0 == metric(web, "vapi_deliveries", status="dead_letter")
    assert metric(workers, "vapi_deliveries_processed_total", outcome="completed") > 0
    assert metric(web, "vapi_webhooks_received_total") == len(files)

    again = cli(env, "send", str(files[0].parent))
    wrong = cli({**env, "VAPI_WEBHOOK_SECRETS": "not-the-secret"}, "send", str(files[0]))

    assert 0 == again.returncode
    web = get(f"http://127.0.0.1:{env['PORT']}/metrics")
    accepted = metric(web, "vapi_webhooks_received_total", outcome="accepted")
    assert accepted == metric(web, "vapi_webhooks_received_total", outcome="duplicate")
    # The summary tells new from duplicate, per run and per file: ignored types and first tool calls are
    # "answered", a repeated tool call a duplicate like any other message (the receiver counts it so too).
    new = re.search(r"(\d+) new", sent.stdout.splitlines()[-1])
    assert new and int(new.group(1)) > 0 and "duplicate" not in sent.stdout
    duplicates = int(metric(web, "vapi_webhooks_received_total", outcome="duplicate"))
    assert duplicates > int(new.group(1))  # the corpus has tool calls
    assert f"{duplicates} duplicate" in again.stdout.splitlines()[-1] and " new" not in again.stdout
    assert f"{files[0].name}: 200 " in again.stdout
    # A refused request shows its status and body, and the exit code says so.
    assert 1 == wrong.returncode
    assert f"{files[0].name}: 401 " in wrong.stderr and "signature" in wrong.stderr
    assert "1 failed" in wrong.stdout
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "webhook_received" in logs and "delivery_processed" in logs
    assert SECRET not in logs
    assert not re.search(r'"(twilioAuthToken|secret|token)": "[^"\[]', logs)


def test_the_3am_story_dead_letters_fixed_and_replayed_once(fast_retries, services, tmp_path):
    """A broken handler dead-letters a batch and misses a booking; after the fix, replay completes each dead letter
    exactly once, and the booking, whose caller has hung up, stays missed for a call-back (never booked later)."""
    env = services
    for statement in (
        "ALTER FUNCTION create_inbound_call_atomically RENAME TO create_inbound_call_atomically_broken",
        "ALTER FUNCTION book_appointment_atomic RENAME TO book_appointment_atomic_broken",
    ):
        sql(env, statement)
    from tests.helpers import book_args, business_day, tool_call

    for i in range(8):
        body = {
            "message": {
                "type": "status-update",
                "status": "in-progress",
                "timestamp": 1727030665008,
                "call": {"id": f"c-3am-{i}", "assistantId": "asst-proc"},
            }
        }
        (tmp_path / f"status-{i}.json").write_text(json.dumps(body))
    booking = tool_call("t-3am", "bookClinicAppointment", book_args(business_day(), "10:00", phone="+44 20 7183 8750"))
    booking["message"]["call"]["assistantId"] = "asst-proc"
    (tmp_path / "tool-calls-booking.json").write_text(json.dumps(booking))

    sent = cli(env, "send", str(tmp_path))
    assert 0 == sent.returncode, sent.stdout + sent.stderr
    assert "call you back" in sent.stdout
    wait_sql(env, "SELECT count(*) = 8 FROM webhook_delivery_log WHERE status = 'dead_letter'")
    missed = [
        json.loads(line) for line in cli(env, "deliveries", "list", "--status", "missed", "--json").stdout.splitlines()
    ]
    assert 1 == len(missed) and "_atomic" in missed[0]["error_message"]
    shown_missed = cli(env, "deliveries", "show", missed[0]["id"]).stdout
    assert "+44 20 7183 8750" in shown_missed and "bookClinicAppointment" in shown_missed

    listed = cli(env, "deliveries", "list", "--status", "dead_letter", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert 8 == len(rows)
    assert all("_atomic" in row["error_message"] for row in rows), rows
    shown = cli(env, "deliveries", "show", rows[0]["id"])
    assert '"errors"' in shown.stdout and "_atomic" in shown.stdout

    for statement in (
        "ALTER FUNCTION create_inbound_call_atomically_broken RENAME TO create_inbound_call_atomically",
        "ALTER FUNCTION book_appointment_atomic_broken RENAME TO book_appointment_atomic",
    ):
        sql(env, statement)
    replayed = cli(env, "deliveries", "replay", "--status", "dead_letter", "--yes")

    assert 0 == replayed.returncode, replayed.stderr
    assert "8 deliveries match" in replayed.stdout and "replayed 8 of 8" in replayed.stdout
    wait_sql(env, "SELECT bool_and(status = 'completed') FROM webhook_delivery_log WHERE answer_by IS NULL")
    by_id = cli(env, "deliveries", "replay", missed[0]["id"], "--yes")
    assert "0 deliveries match" in by_id.stdout and "1 not replayed: synchronous tool calls" in by_id.stdout
    assert 8 == sql(env, "SELECT count(*) FROM calls")
    assert 0 == sql(env, "SELECT count(*) FROM appointments")
    assert "missed" == sql(env, f"SELECT status FROM webhook_delivery_log WHERE id = '{missed[0]['id']}'")

    again = cli(env, "deliveries", "replay", "--status", "dead_letter", "--yes")
    resent = cli(env, "send", str(tmp_path))
    wait_sql(env, NOTHING_LEFT_TO_RUN)
    assert "0 deliveries match" in again.stdout and 0 == resent.returncode
    assert (8, 0) == (sql(env, "SELECT count(*) FROM calls"), sql(env, "SELECT count(*) FROM appointments"))


def test_a_real_prometheus_scrapes_web_workers_and_scheduler(services, tmp_path):
    """Debian's Prometheus scrapes the three processes on loopback and answers a query for our counter."""
    prometheus = system_tool("prometheus")
    env = services
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n"
        f"  - {{job_name: vapi-ingest-web, static_configs: [{{targets: ['127.0.0.1:{env['PORT']}']}}]}}\n"
        f"  - {{job_name: vapi-ingest-worker, static_configs: [{{targets: ['127.0.0.1:{env['WORKER_METRICS_PORT']}']}}]}}\n"
        f"  - {{job_name: vapi-ingest-scheduler, static_configs: [{{targets: ['127.0.0.1:{env['SCHEDULER_METRICS_PORT']}']}}]}}\n"
    )
    assert 0 == cli(env, "send", str(corpus_files()[0])).returncode
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        base = f"http://127.0.0.1:{port}/api/v1/query?query="

        def scraped() -> list[dict] | None:
            received = json.loads(get(base + "vapi_webhooks_received_total"))["data"]["result"]
            up = json.loads(get(base + "up"))["data"]["result"]
            return up if received and len([u for u in up if u["value"][1] == "1"]) == 3 else None

        up = wait_until_sync(scraped, timeout_s=60, interval_s=0.5, what="all three processes scraped")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert {"vapi-ingest-web", "vapi-ingest-worker", "vapi-ingest-scheduler"} == {u["metric"]["job"] for u in up}


def test_replay_stops_cleanly_on_ctrl_c_and_says_how_far_it_got(env, org_for_env):
    """SIGINT during a rate-limited replay: it finishes the batch, exits 130, and the count matches the rows."""
    sql(
        env,
        f"""
        INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, attempts, error_message)
        SELECT '{org_for_env}', 'hang', 'hang:' || i, '{{}}', 'dead_letter', 1, 'boom'
          FROM generate_series(1, 50) AS i""",
    )
    proc = subprocess.Popen(
        [str(BIN), "deliveries", "replay", "--status", "dead_letter", "--yes", "--rate", "10"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_sql(env, "SELECT count(*) > 0 FROM webhook_delivery_log WHERE replay_count = 1")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)

    assert 130 == proc.returncode, err
    done = int(found(r"replayed (\d+) of 50", out))
    assert "stopped by Ctrl-C" in out
    assert 0 < done < 50
    assert done == sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE replay_count = 1")
    assert 50 - done == sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE status = 'dead_letter'")


def test_two_web_processes_share_the_port_and_their_metrics(env, tmp_path):
    """WEB_PROCESSES=2: both answer on PORT, /metrics sums their counters, and SIGTERM stops both cleanly."""
    from tests.procs import start, stop

    env = {**env, "WEB_PROCESSES": "2"}
    org = cli(env, "orgs", "create", "--name", "Two", "--assistant-id", "asst-two")
    env["VAPI_DEFAULT_ORG_ID"] = org.stdout.strip()
    web = start("serve", env, tmp_path / "web.log")
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz")
        files = corpus_files()
        sent = cli(env, "send", str(files[0].parent), "--concurrency", "16")
        metrics = get(f"http://127.0.0.1:{env['PORT']}/metrics")
    finally:
        clean = stop(web)
    assert 0 == sent.returncode, sent.stdout
    assert len(files) == metric(metrics, "vapi_webhooks_received_total")
    # One row per accepted request has no answer_by: the delivery, or a tool-call message's own row.
    assert sql(env, "SELECT count(*) FROM webhook_delivery_log WHERE answer_by IS NULL") == metric(
        metrics, "vapi_webhooks_received_total", outcome="accepted"
    )
    assert clean and 0 == web.returncode


def test_cli_commands_print_ids_and_fail_with_one_line(env):
    """orgs/agents/numbers print ids; bad input exits non-zero with one clear line."""
    org = cli(env, "orgs", "create", "--name", "Clinic", "--timezone", "Europe/Paris", "--region", "FR")
    assert 0 == org.returncode, org.stderr
    org_id = org.stdout.strip()

    assert 0 == cli(env, "agents", "add", "--org", org_id, "--assistant-id", "a-1").returncode
    assert 0 == cli(env, "numbers", "add", "--org", org_id, "--phone-number-id", "pn-1").returncode
    for args, reason in [
        (("orgs", "create", "--name", "X", "--timezone", "Mars/Olympus"), "IANA"),
        (("agents", "add", "--org", "nope", "--assistant-id", "a"), "neither a UUID nor a prefix"),
        (("agents", "add", "--org", org_id, "--assistant-id", "a-1"), "already belongs"),
        (
            ("numbers", "add", "--org", "00000000-0000-0000-0000-000000000000", "--phone-number-id", "p"),
            "no organization",
        ),
        (("send", "/no/such/dir"), "no such file"),
    ]:
        result = cli(env, *args)
        assert 0 != result.returncode, args
        assert reason in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_bad_setting_stops_start_up_with_one_line(env):
    """A malformed variable stops `serve` before it starts, naming the variable."""
    result = cli({**env, "VAPI_HMAC_ALGORITHM": "md5"}, "serve")

    assert 0 != result.returncode
    assert "VAPI_HMAC_ALGORITHM" in result.stderr
    assert 1 == len(result.stderr.strip().splitlines())


def test_migrate_twice_is_a_no_op(env):
    """`vapi-ingest migrate` on a migrated database applies nothing."""
    result = cli(env, "migrate")

    assert 0 == result.returncode
    assert "applied 0 migration(s)" in result.stdout


@pytest.mark.parametrize("after_s", [0.0, 0.5, 1.0, 2.0])
def test_a_worker_stopped_while_it_boots_exits_promptly(env, tmp_path, after_s):
    """SIGTERM to the worker's process group while it is still starting: it exits within 15 s, every process
    of the group with it (it hung until SIGKILL when Dramatiq had seen the first SIGTERM before our repeat
    guard was installed, then took the second as "kill now" mid-stop)."""
    import os

    from tests.procs import start, stop

    worker = start("worker", env, tmp_path / "worker.log")
    time.sleep(after_s)
    clean = stop(worker)
    try:
        os.killpg(worker.pid, 0)
        left = True
    except ProcessLookupError:
        left = False

    assert clean and not left, (tmp_path / "worker.log").read_text()[-2000:]
