"""The access record misses nothing: every path that shows patient data from a stored message records who saw it.

The paths are enumerated from the running app's router and the CLI's command tree, so a new route or
command fails here until it is classified: it shows patient data and records the access (checked:
the data is shown and a row names the person), or it shows none (checked: a seeded patient's name,
number and words never appear in its answer), or it only acts (its reason is written down).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import pytest

from db import orgs, tokens
from ingest.app import create_app
from ingest.cli import main as cli_main
from tests.helpers import found
from tests.procs import cli

ADMIN = "access-admin-token-0123456789"
NAME, NUMBER, WORDS = "Zelda Markerfield", "+15550199123", "knee-markerfield-pain"
#: What must never appear unrecorded: the patient's name, number and words, in any casing or escaping.
MARKERS = ("markerfield", "5550199123")

RECORDS, NONE, ACTS = "records the access", "shows no patient data", "acts; answers with a redirect or a count"

#: Every console route: (method, path) -> how it treats patient data.
CONSOLE = {
    ("GET", "/console/login"): NONE,
    ("POST", "/console/login"): ACTS,
    ("POST", "/console/logout"): ACTS,
    ("GET", "/console/"): NONE,
    ("GET", "/console/dead-letters"): NONE,
    ("GET", "/console/dead-letters/replay"): NONE,
    ("GET", "/console/deliveries/{id}"): RECORDS,  # a missed call's number and request; else the payload stays shut
    ("POST", "/console/deliveries/{id}/called-back"): ACTS,
    ("POST", "/console/deliveries/{id}/payload"): RECORDS,
    ("POST", "/console/deliveries/{id}/replay"): ACTS,
    ("POST", "/console/deliveries/{id}/discard"): ACTS,
    ("GET", "/console/missed"): RECORDS,
    ("GET", "/console/access"): NONE,  # the record itself: who, when, what kind, never the data
    ("GET", "/console/appointments"): RECORDS,
    ("GET", "/console/search"): RECORDS,
    ("GET", "/console/quarantine"): NONE,
    ("GET", "/console/quarantine/confirm"): NONE,
    ("POST", "/console/quarantine/route"): ACTS,
    ("GET", "/console/clinics"): NONE,
    ("POST", "/console/clinics"): ACTS,
    ("GET", "/console/clinics/{id}"): NONE,
    ("POST", "/console/clinics/{id}"): ACTS,
    ("POST", "/console/clinics/{id}/revoke"): ACTS,
    ("GET", "/console/replays"): NONE,
    ("POST", "/console/replays"): ACTS,
    ("GET", "/console/replays/{id}"): NONE,
    ("POST", "/console/replays/{id}/cancel"): ACTS,
    ("GET", "/console/static"): NONE,  # the stylesheet and htmx
}
#: The rest of the web port: the receiver, health, metrics and the admin API.
SERVICE = {
    ("POST", "/webhooks/vapi"): ACTS,  # Vapi's messages in; its answers echo nothing stored
    ("GET", "/healthz"): NONE,
    ("GET", "/readyz"): NONE,
    ("GET", "/health"): NONE,
    ("GET", "/metrics"): NONE,
    ("GET", "/api/openapi.json"): NONE,
    ("GET", "/api/reveals"): NONE,
    ("GET", "/api/webhook-metrics/queue-health"): NONE,
    ("GET", "/api/webhook-metrics/delivery-stats"): NONE,
    ("GET", "/api/webhook-metrics/recent-failures"): NONE,  # ids, types, statuses, errors: no payload
    ("GET", "/api/webhook-metrics/dead-letter-queue"): NONE,
    ("GET", "/api/webhook-metrics/processing-time"): NONE,
    ("POST", "/api/webhook-metrics/retry-failed/{id}"): ACTS,
    ("POST", "/api/webhook-metrics/replay"): ACTS,
    ("GET", "/api/orgs"): NONE,
    ("POST", "/api/orgs"): ACTS,
    ("GET", "/api/orgs/{org_id}"): NONE,
    ("PATCH", "/api/orgs/{org_id}"): ACTS,
    ("GET", "/api/assistants"): NONE,
    ("POST", "/api/assistants"): ACTS,
    ("DELETE", "/api/assistants/{vapi_id}"): ACTS,
    ("GET", "/api/phone-numbers"): NONE,
    ("POST", "/api/phone-numbers"): ACTS,
    ("DELETE", "/api/phone-numbers/{vapi_id}"): ACTS,
    ("GET", "/api/tokens"): NONE,
    ("POST", "/api/tokens"): ACTS,
    ("DELETE", "/api/tokens/{token_id}"): ACTS,
}
#: Every CLI command -> how it treats patient data; those that read stored rows are run with the arguments given.
COMMANDS = {
    "deliveries show": (RECORDS, ["{missed}"]),
    "deliveries list": (NONE, ["--json"]),
    "quarantine list": (NONE, ["--json"]),
    "reveals list": (NONE, ["--json"]),
    "orgs list": (NONE, ["--json"]),
    "orgs show": (NONE, ["{org}"]),
    "tokens list": (NONE, ["--json"]),
    "agents list": (NONE, ["--json"]),
    "numbers list": (NONE, ["--json"]),
    "deliveries replay": (NONE, ["--status", "dead_letter", "--dry-run"]),
    "retention run": (NONE, ["--dry-run"]),
    "quarantine route": (ACTS, None),
    "orgs create": (ACTS, None),
    "orgs update": (ACTS, None),
    "agents add": (ACTS, None),
    "agents remove": (ACTS, None),
    "numbers add": (ACTS, None),
    "numbers remove": (ACTS, None),
    "tokens create": (ACTS, None),
    "tokens revoke": (ACTS, None),
    "send": (ACTS, None),  # sends files to a receiver; prints status codes
    "migrate": (ACTS, None),
    "serve": (ACTS, None),
    "worker": (ACTS, None),
    "scheduler": (ACTS, None),
}


def _routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, its sub-apps' included (their paths carry their prefix)."""
    found = set()
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is not None:
            found |= _routes(sub)
            continue
        for route in resource:
            if route.method != "HEAD":
                found.add((route.method, resource.canonical))
    return found


def _commands(cmd: click.Command, path: tuple[str, ...] = ()) -> set[str]:
    if isinstance(cmd, click.Group):
        return {name for sub_name, sub in cmd.commands.items() for name in _commands(sub, (*path, sub_name))}
    return {" ".join(path)}


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [m for m in MARKERS if m in low]


@pytest.fixture
async def patient(pool, org_id) -> dict[str, Any]:
    """One patient's traces: a missed tool call (their number and name), a dead-lettered end-of-call report
    (their words), their call and their appointment."""
    now = datetime.now(UTC)
    call = {"id": "call-7f3a", "customer": {"number": NUMBER}, "assistantId": "asst-test"}
    asked = {"id": "tc-1", "type": "function", "function": {"name": "book_appointment", "arguments": {"name": NAME}}}
    missed = await pool.fetchval(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, answer_by, tool_name,"
        "                                  customer_number)"
        " VALUES ($1, 'tool-calls', 'tool-call:tc-1', $2, 'missed', now(), 'book_appointment', $3) RETURNING id",
        org_id,
        {"type": "tool-calls", "call": call, "toolCallList": [asked]},
        NUMBER,
    )
    report = await pool.fetchval(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, attempts, error_message)"
        " VALUES ($1, 'end-of-call-report', 'end-of-call-report:call-7f3a', $2, 'dead_letter', 5, 'boom')"
        " RETURNING id",
        org_id,
        {"type": "end-of-call-report", "call": call, "artifact": {"transcript": f"User: my {WORDS}"}},
    )
    await pool.execute(
        "INSERT INTO calls (org_id, vapi_call_id, customer_number, started_at) VALUES ($1, 'call-7f3a', $2, $3)",
        org_id,
        NUMBER,
        now,
    )
    starts = (now + timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    await pool.execute(
        "WITH l AS (INSERT INTO leads (org_id, phone, name) VALUES ($1, $2, $3) RETURNING id)"
        " INSERT INTO appointments (org_id, contact_id, scheduled_at, duration_minutes, ends_at)"
        " SELECT $1, l.id, $4::timestamptz, 30, $4::timestamptz + interval '30 minutes' FROM l",
        org_id,
        NUMBER,
        NAME,
        starts,
    )
    return {"missed": missed, "report": report, "org": org_id, "week": starts.date().isoformat()}


@pytest.fixture
async def web(aiohttp_client, settings, app_broker) -> Any:
    """The app with ADMIN_TOKEN and a fixed console session key (a worker only for tests taking ``broker``)."""
    configured = dataclasses.replace(settings, admin_token=ADMIN, console_session_key=b"k" * 32)
    return await aiohttp_client(create_app(configured, broker=app_broker))


async def _sign_in(web: Any, token: str) -> None:
    page = await (await web.get("/console/login")).text()
    csrf = found(r'name="csrf" value="([^"]+)"', page)
    resp = await web.post("/console/login", data={"token": token, "csrf": csrf}, allow_redirects=False)
    assert resp.status == 302, await resp.text()


async def _csrf(web: Any) -> str:
    page = await (await web.get("/console/")).text()
    return found(r'name="csrf" value="([^"]+)"', page)


def test_every_route_and_command_is_classified(app_routes, cli_commands):
    """A route or command nobody classified fails here: decide whether it shows patient data first."""
    assert app_routes == set(CONSOLE) | set(SERVICE)
    assert cli_commands == set(COMMANDS)


@pytest.fixture
def app_routes(settings) -> set[tuple[str, str]]:
    configured = dataclasses.replace(settings, admin_token=ADMIN, console_session_key=b"k" * 32)
    return _routes(create_app(configured))


@pytest.fixture
def cli_commands() -> set[str]:
    return _commands(cli_main)


async def test_console_pages_that_show_patient_data_record_the_operator_and_the_rest_show_none(web, pool, patient):
    """Signed in with an operator's own admin token: every GET page either shows none of the patient's data, or
    shows it with an access row naming the operator, the console and the client address; opening the report's
    payload (a POST) is recorded the same way."""
    token = await tokens.create_admin(pool, name="Dana Ops")
    await _sign_in(web, token)
    urls = {
        "/console/deliveries/{id}": [
            f"/console/deliveries/{patient['missed']}",
            f"/console/deliveries/{patient['report']}",
        ],
        "/console/search": ["/console/search?q=%2B15550199123"],
        "/console/appointments": [f"/console/appointments?org={patient['org']}&week={patient['week']}"],
        "/console/clinics/{id}": [f"/console/clinics/{patient['org']}"],
        "/console/replays/{id}": [f"/console/replays/{uuid.uuid4()}"],
        "/console/static": ["/console/static/console.css"],
        "/console/dead-letters/replay": ["/console/dead-letters/replay?group=x"],
    }
    shown_with_record = []
    for (method, path), kind in CONSOLE.items():
        if method != "GET":
            continue
        for url in urls.get(path, [path]):
            before = await pool.fetchval("SELECT count(*) FROM reveals")
            text = await (await web.get(url)).text()
            rows = await pool.fetch("SELECT * FROM reveals ORDER BY id OFFSET $1", before)
            if _leaks(text):
                assert kind == RECORDS, f"{url} shows patient data but is classified {kind!r}"
                assert rows, f"{url} showed patient data without recording it"
                assert {(r["revealed_by"], r["via"], r["client"]) for r in rows} == {
                    ("Dana Ops (admin)", "console", "127.0.0.1")
                }
                shown_with_record.append(path)
            else:
                assert not rows or kind == RECORDS, f"{url} recorded an access it did not give"
    assert set(shown_with_record) == {p for (m, p), k in CONSOLE.items() if m == "GET" and k == RECORDS}

    report_page = await (await web.get(f"/console/deliveries/{patient['report']}")).text()
    assert not _leaks(report_page)
    opened = await web.post(f"/console/deliveries/{patient['report']}/payload", data={"csrf": await _csrf(web)})
    assert "markerfield" in (await opened.text()).lower()
    last = await pool.fetchrow("SELECT * FROM reveals ORDER BY id DESC LIMIT 1")
    assert (last["delivery_id"], last["what"], last["revealed_by"]) == (
        patient["report"],
        "payload",
        "Dana Ops (admin)",
    )
    holder = await tokens.holder_of(pool, token)
    assert holder is not None and last["token_id"] == holder.id


async def test_admin_api_reads_show_no_patient_data(web, patient):
    """Every GET of the admin API and the service, with the admin token: none of the patient's data."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    fill = {"{org_id}": str(patient["org"])}
    for (method, path), kind in SERVICE.items():
        if method != "GET":
            continue
        for key, value in fill.items():
            path = path.replace(key, value)
        resp = await web.get(path, headers=headers)
        assert resp.status == 200, (path, resp.status)
        assert kind == NONE and not _leaks(await resp.text()), path


async def test_cli_commands_that_read_stored_rows_record_or_show_none(env, patient):
    """Each CLI command that reads stored rows, run as an operator would: ``deliveries show`` prints the
    payload after recording the OS user and host; the others print none of the patient's data."""
    seeded = patient
    for name, (kind, args) in COMMANDS.items():
        if args is None:
            continue
        argv = [*name.split(), *(a.format(**{k: str(v) for k, v in seeded.items()}) for a in args)]
        done = cli(env, *argv)
        assert done.returncode == 0, (argv, done.stderr)
        if kind == RECORDS:
            assert _leaks(done.stdout), argv
        else:
            assert not _leaks(done.stdout + done.stderr), argv


async def test_deliveries_show_records_the_operating_system_user_and_host(env, pool, patient):
    import getpass
    import socket

    done = cli(env, "deliveries", "show", str(patient["missed"]))
    assert done.returncode == 0, done.stderr
    row = await pool.fetchrow("SELECT * FROM reveals WHERE delivery_id = $1", patient["missed"])
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    assert (row["revealed_by"], row["via"], row["client"], row["what"]) == (who, "cli", who, "payload")

    listed = cli(env, "reveals", "list", "--by", getpass.getuser(), "--json")
    assert [json.loads(line)["delivery_id"] for line in listed.stdout.splitlines()] == [str(patient["missed"])]


async def test_an_operators_admin_token_signs_in_is_named_and_ends_when_revoked(env, web, pool, org_id, patient):
    """``tokens create --admin --name``: an admin for the API and the console, named in what it records, listed
    with the others; a clinic's token may not read the record; revoked, it is refused at once everywhere."""
    made = cli(env, "tokens", "create", "--admin", "--name", "Dana Ops")
    nameless = cli(env, "tokens", "create", "--admin")
    both = cli(env, "tokens", "create", "--admin", "--name", "X", "--org", str(org_id))
    token = made.stdout.strip()
    clinic = await tokens.create(pool, org_id, name="front desk")
    listed = [json.loads(line) for line in cli(env, "tokens", "list", "--json").stdout.splitlines()]

    assert made.returncode == 0 and token.startswith("vit_")
    assert nameless.returncode == 2 and "--admin needs --name" in nameless.stderr
    assert both.returncode == 2 and "either --org" in both.stderr
    assert {(t["name"], t["admin"], t["org_id"]) for t in listed} == {
        ("Dana Ops", True, None),
        ("front desk", False, str(org_id)),
    }

    await _sign_in(web, token)
    await web.get(f"/console/deliveries/{patient['missed']}")
    api = await web.get("/api/reveals", headers={"Authorization": f"Bearer {token}"})
    refused = await web.get("/api/reveals", headers={"Authorization": f"Bearer {clinic}"})
    items = (await api.json())["items"]
    assert 200 == api.status and 403 == refused.status
    assert [(i["delivery_id"], i["what"], i["revealed_by"]) for i in items] == [
        (str(patient["missed"]), "caller", "Dana Ops (admin)")
    ]

    token_id = next(t["id"] for t in listed if t["admin"])
    assert cli(env, "tokens", "revoke", token_id).returncode == 0
    after_api = await web.get("/api/reveals", headers={"Authorization": f"Bearer {token}"})
    after_console = await web.get("/console/", allow_redirects=False)
    assert 401 == after_api.status
    assert (302, "/console/login") == (after_console.status, after_console.headers["Location"])


async def test_the_access_record_lists_by_clinic_person_and_time(web, pool, org_id, patient):
    """Accesses by two people to two clinics: the console page, the API and the CLI's query filter by clinic,
    person (name or token id) and time; a clinic's session may not open the page."""
    other = await orgs.create_org(pool, name="Other clinic")
    dana = await tokens.create_admin(pool, name="Dana Ops")
    await _sign_in(web, dana)
    await web.get(f"/console/deliveries/{patient['missed']}")
    web.session.cookie_jar.clear()
    await _sign_in(web, ADMIN)
    await web.get(f"/console/deliveries/{patient['missed']}")
    await pool.execute(
        "INSERT INTO reveals (org_id, revealed_by, what, via, revealed_at) VALUES ($1, 'Lee (admin)', 'search', 'console',"
        " now() - interval '2 days')",
        other,
    )
    headers = {"Authorization": f"Bearer {ADMIN}"}

    async def api(**query: str) -> list[tuple[str, str]]:
        found = await (await web.get("/api/reveals", params=query, headers=headers)).json()
        return [(i["org_name"], i["revealed_by"]) for i in found["items"]]

    holder = await tokens.holder_of(pool, dana)
    assert holder is not None
    dana_id = str(holder.id)
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert await api() == [
        ("Test clinic", "admin (break-glass)"),
        ("Test clinic", "Dana Ops (admin)"),
        ("Other clinic", "Lee (admin)"),
    ]
    assert await api(org_id=str(other)) == [("Other clinic", "Lee (admin)")]
    assert await api(by="dana") == await api(by=dana_id) == [("Test clinic", "Dana Ops (admin)")]
    assert await api(since=since) == [("Test clinic", "admin (break-glass)"), ("Test clinic", "Dana Ops (admin)")]
    assert await api(until=since) == [("Other clinic", "Lee (admin)")]
    bad = await web.get("/api/reveals", params={"since": "yesterday"}, headers=headers)
    assert 400 == bad.status

    page = await (await web.get("/console/access", params={"by": "Dana"})).text()
    assert "Dana Ops (admin)" in page and "break-glass" not in page.split("<table")[-1]
    web.session.cookie_jar.clear()
    await _sign_in(web, await tokens.create(pool, org_id, name="front desk"))
    assert 403 == (await web.get("/console/access")).status
