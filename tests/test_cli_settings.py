"""Every command x every bad setting: one line naming the variable, exit 2 for a bad value, 1 for unreachable.

The command list is read from the CLI itself, so a new command without a row here fails
:func:`test_every_command_has_sample_arguments`.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import click
import pytest

from ingest.cli import main
from tests.procs import cli, free_port

#: Arguments that get each command past its own parsing, to where it reads settings.
SAMPLE_ARGS: dict[str, tuple[str, ...]] = {
    "migrate": (),
    "serve": (),
    "worker": (),
    "scheduler": (),
    "orgs create": ("--name", "X"),
    "orgs list": (),
    "orgs show": ("12345678",),
    "orgs update": ("12345678", "--name", "Y"),
    "agents add": ("--org", "12345678", "--assistant-id", "a"),
    "agents list": (),
    "agents remove": ("a",),
    "numbers add": ("--org", "12345678", "--phone-number-id", "p"),
    "numbers list": (),
    "numbers remove": ("p",),
    "tokens create": ("--org", "12345678"),
    "tokens list": (),
    "tokens revoke": ("12345678",),
    "deliveries list": (),
    "deliveries show": ("12345678",),
    "deliveries replay": ("--status", "dead_letter", "--yes"),
    "quarantine list": (),
    "quarantine route": ("--org", "12345678", "--all", "--yes"),
    "retention run": (),
    "reveals list": (),
    "send": ("SAMPLE_FILE",),
}
#: Long-running services go on without PostgreSQL (the receiver answers 503 until it is back).
DEGRADED_WITHOUT_DB = {"serve", "worker", "scheduler"}
USES_DATABASE = set(SAMPLE_ARGS) - {"send"}


def _leaves(group: click.Group, prefix: str = "") -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        found.extend(_leaves(command, f"{path} ") if isinstance(command, click.Group) else [path])
    return found


def test_every_command_has_sample_arguments():
    """The table below covers exactly the CLI's commands."""
    assert sorted(_leaves(main)) == sorted(SAMPLE_ARGS)


def _unreachable_db() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/x"


# (setting overrides, commands, expected exit code, text the one line must contain)
CASES = [
    ({"DATABASE_URL": "notaurl"}, USES_DATABASE, 2, "DATABASE_URL: not a postgresql:// URL"),
    ({"DATABASE_URL": "mysql://root@127.0.0.1/clinic"}, USES_DATABASE, 2, "DATABASE_URL: not a postgresql:// URL"),
    ({"DATABASE_URL": "postgresql://127.0.0.1/x?sslmode=bogus"}, USES_DATABASE, 2, "DATABASE_URL: sslmode"),
    (
        {"DATABASE_URL": "postgresql://no_such_role@127.0.0.1:5432/postgres"},
        USES_DATABASE,
        2,
        'DATABASE_URL: role "no_such_role" does not exist',
    ),
    ({"DATABASE_URL": _unreachable_db()}, USES_DATABASE - DEGRADED_WITHOUT_DB, 1, "DATABASE_URL: cannot reach"),
    ({"REDIS_URL": "garbage"}, set(SAMPLE_ARGS), 2, "REDIS_URL: not a redis://"),
    ({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, {"worker"}, 1, "REDIS_URL: cannot reach Redis"),
    ({"LOG_LEVEL": "LOUD"}, set(SAMPLE_ARGS), 2, "LOG_LEVEL"),
    ({"PORT": "eighty"}, set(SAMPLE_ARGS), 2, "PORT must be an integer"),
    ({"VAPI_WEBHOOK_SECRETS": ""}, {"serve", "send"}, 2, "VAPI_WEBHOOK_SECRETS is required"),
]


@pytest.mark.parametrize(("overrides", "commands", "code", "says"), CASES, ids=[str(c[0]) for c in CASES])
def test_a_bad_setting_is_one_line_naming_it_for_every_command(env, tmp_path, overrides, commands, code, says):
    """Each command given this setting exits with ``code`` and exactly one line naming the variable, no traceback."""
    sample = tmp_path / "status-update.json"
    sample.write_text('{"message": {"type": "status-update", "status": "ringing", "call": {"id": "c"}}}')

    def run(command: str) -> tuple[str, int, str]:
        args = [sample_arg if sample_arg != "SAMPLE_FILE" else str(sample) for sample_arg in SAMPLE_ARGS[command]]
        done = cli({**env, **overrides}, *command.split(), *args)
        return command, done.returncode, done.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, sorted(commands)))

    wrong = [
        (command, returncode, stderr)
        for command, returncode, stderr in results
        if returncode != code or len(stderr.strip().splitlines()) != 1 or says not in stderr or "Traceback" in stderr
    ]
    assert [] == wrong


def test_a_port_in_use_is_one_line_and_exit_1(env):
    """serve, worker and scheduler refuse a busy port by its variable's name before starting anything."""
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        results = {
            variable: cli({**env, variable: port}, command)
            for command, variable in (
                ("serve", "PORT"),
                ("worker", "WORKER_METRICS_PORT"),
                ("scheduler", "SCHEDULER_METRICS_PORT"),
            )
        }

    for variable, done in results.items():
        assert 1 == done.returncode, done.stderr
        assert f"Error: {variable} {port} is in use" == done.stderr.strip()


def test_debug_log_level_adds_the_traceback(env):
    """LOG_LEVEL=DEBUG keeps the one line and prints the traceback before it."""
    done = cli({**env, "LOG_LEVEL": "DEBUG", "DATABASE_URL": _unreachable_db()}, "deliveries", "list")

    assert 1 == done.returncode
    assert "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: DATABASE_URL: cannot reach PostgreSQL")


def test_commands_without_webhooks_run_without_a_webhook_secret(env):
    """migrate and deliveries list need no VAPI_WEBHOOK_SECRETS (only serve and send do)."""
    no_secret = {k: v for k, v in env.items() if k != "VAPI_WEBHOOK_SECRETS"}

    assert 0 == cli(no_secret, "migrate").returncode
    listed = cli(no_secret, "deliveries", "list")
    assert 0 == listed.returncode, listed.stderr


def test_serve_says_what_it_found_and_goes_on_without_postgresql(env, tmp_path):
    """Without PostgreSQL, serve logs its start-up line at WARNING with the reason, then answers 503 on /readyz."""
    import json
    import urllib.error

    from tests.procs import start, stop, wait_for

    log = tmp_path / "web.log"
    web = start("serve", {**env, "DATABASE_URL": _unreachable_db()}, log)
    try:
        assert "ok" in wait_for(f"http://127.0.0.1:{env['PORT']}/healthz").lower()
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            wait_for(f"http://127.0.0.1:{env['PORT']}/readyz", timeout_s=2)
    finally:
        stop(web)
    start_line = next(json.loads(line) for line in log.read_text().splitlines() if "web_starting" in line)

    assert 503 == not_ready.value.code
    assert ("warning", "reachable") == (start_line["level"], start_line["redis"])
    assert start_line["database"].startswith("cannot reach PostgreSQL")
    assert {"version", "port", "auth_scheme", "processes"} <= set(start_line)


def test_serve_warns_when_the_default_org_does_not_exist(env, tmp_path):
    """A VAPI_DEFAULT_ORG_ID naming no organization is a warning at start-up, not silent quarantine."""
    import uuid

    from tests.procs import start, stop, wait_for

    missing = str(uuid.uuid4())
    log = tmp_path / "web.log"
    assert 0 == cli(env, "migrate").returncode
    web = start("serve", {**env, "VAPI_DEFAULT_ORG_ID": missing}, log)
    try:
        wait_for(f"http://127.0.0.1:{env['PORT']}/healthz")
    finally:
        stop(web)
    warning = [line for line in log.read_text().splitlines() if "default_org_missing" in line]

    assert 1 == len(warning) and missing in warning[0]


def test_importing_the_cli_does_not_import_the_web_stack():
    """``vapi-ingest deliveries list`` needs no aiohttp, console or admin API: the CLI imports them only through
    ``serve`` (the web process's entry point), so a command starts fast and a web bug cannot break it."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, ingest.cli; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    web = [m for m in loaded if m.split(".")[0] in ("aiohttp", "aiohttp_jinja2", "aiohttp_session")]
    web += [
        m for m in loaded if m.startswith(("ingest.app", "ingest.console", "ingest.admin", "ingest.webhook.receiver"))
    ]
    assert web == []
    assert "ingest.cli.deliveries" in loaded
