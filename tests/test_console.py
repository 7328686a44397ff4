"""The console's sign-in, session, CSRF and headers over real HTTP (the browser tests drive the pages)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from db import signins
from ingest.app import create_app
from tests.helpers import Explaining, found, insert_delivery
from workers.messages import tool_call_key
from workers.parsing import stored

ADMIN = "console-admin-token-0123456789"
PAGES = ["/console/", "/console/dead-letters", "/console/deliveries/00000000-0000-0000-0000-000000000000"]


@pytest.fixture
async def web(aiohttp_client, settings, app_broker) -> Any:
    """The app with ADMIN_TOKEN and a fixed console session key (a worker only for tests taking ``broker``)."""
    configured = dataclasses.replace(settings, admin_token=ADMIN, console_session_key=b"k" * 32)
    return await aiohttp_client(create_app(configured, broker=app_broker))


async def _csrf(web: Any) -> str:
    page = await (await web.get("/console/login")).text()
    return found(r'name="csrf" value="([^"]+)"', page)


async def _sign_in(web: Any, token: str) -> Any:
    return await web.post("/console/login", data={"token": token, "csrf": await _csrf(web)}, allow_redirects=False)


@pytest.mark.parametrize("path", PAGES)
async def test_without_a_session_every_page_redirects_to_sign_in(web, path):
    """No cookie: 302 to /console/login, with the security headers."""
    resp = await web.get(path, allow_redirects=False)

    assert (302, "/console/login") == (resp.status, resp.headers["Location"])
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "DENY" == resp.headers["X-Frame-Options"]


async def test_sign_in_sets_a_strict_http_only_cookie_and_opens_the_pages(web):
    """The admin token signs in; the cookie is HttpOnly and SameSite=Strict; pages answer 200."""
    resp = await _sign_in(web, ADMIN)
    cookie = resp.headers["Set-Cookie"]
    statuses = [(await web.get(path)).status for path in PAGES[:2]]

    assert (302, "/console/") == (resp.status, resp.headers["Location"])
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; behind TLS the cookie is Secure
    assert [200, 200] == statuses


async def test_a_post_without_the_csrf_token_is_refused(web):
    """Signed in, sign-out without the form's CSRF token is 403 and the session stays."""
    await _sign_in(web, ADMIN)

    forged = await web.post("/console/logout", data={}, allow_redirects=False)
    still = await web.get("/console/", allow_redirects=False)

    assert 403 == forged.status
    assert 200 == still.status


async def test_revoking_an_org_token_ends_its_console_session(web, pool, org_id):
    """A session of an org token stops working on the next request after the token is revoked."""
    from db import tokens

    token = await tokens.create(pool, org_id, name="desk")
    await _sign_in(web, token)
    before = await web.get("/console/", allow_redirects=False)
    token_id = (await tokens.list_tokens(pool, org_id))[0]["id"]
    await tokens.revoke(pool, token_id)
    after = await web.get("/console/", allow_redirects=False)

    assert 200 == before.status
    assert (302, "/console/login") == (after.status, after.headers["Location"])


async def test_failed_sign_ins_are_limited_and_counted(web):
    """After 10 wrong tokens from one address the next attempt is 429, even with the right token."""
    from prometheus_client import REGISTRY

    def counted(outcome: str) -> float:
        return REGISTRY.get_sample_value("vapi_console_signins_total", {"outcome": outcome}) or 0.0

    failed_before, limited_before = counted("failed"), counted("limited")
    wrong = [(await _sign_in(web, f"wrong-{i}")).status for i in range(signins.MAX_FAILED_ATTEMPTS)]
    limited = await _sign_in(web, ADMIN)

    assert [401] * signins.MAX_FAILED_ATTEMPTS == wrong
    assert 429 == limited.status
    assert signins.MAX_FAILED_ATTEMPTS == counted("failed") - failed_before
    assert 1 == counted("limited") - limited_before


async def test_grouping_dead_letters_reads_the_dead_letter_index_not_the_log(pool):
    """EXPLAIN: the dead-letter groups come from the partial index over dead letters (no scan of the whole log)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # a tiny test table would be scanned anyway
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT error_fingerprint, count(*) FROM webhook_delivery_log"
                " WHERE status = 'dead_letter' GROUP BY error_fingerprint"
            )
        )

    assert "idx_delivery_log_dead_letter_groups" in plan, plan


async def test_error_fingerprints_group_errors_that_differ_only_in_values(pool, org_id):
    """Ids, numbers and quoted values are normalised; different messages stay apart."""
    errors = [
        'relation "calls_1" does not exist',
        'relation "calls_2" does not exist',
        "timeout after 1500 ms on 3f0c1c8e-6a7b-4f7e-9d1e-2b3c4d5e6f70",
        "timeout after 20 ms on 00000000-0000-0000-0000-000000000001",
        "handler broke",
    ]
    for i, error in enumerate(errors):
        await pool.execute(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, error_message)"
            " VALUES ($1, 'status-update', $2, '{}', 'dead_letter', $3)",
            org_id,
            f"k-{i}",
            error,
        )
    from db.dead_letters import dead_letter_groups

    async with pool.acquire() as conn:
        groups = {g["fingerprint"]: g["count"] for g in await dead_letter_groups(conn)}

    assert {
        "relation <value> does not exist": 2,
        "timeout after <n> ms on <id>": 2,
        "handler broke": 1,
    } == groups


async def test_one_renamed_function_is_one_group_however_it_was_planned(pool, org_id):
    """A real function renamed under a cached and a fresh statement: PostgreSQL names it f(uuid, text) for
    the one and f(unknown, unknown) for the other; both fold into one group, and another function's error
    stays its own (issue 18: one incident was split 510 + 90)."""
    import asyncpg

    from db.dead_letters import dead_letter_groups

    await pool.execute("CREATE FUNCTION probe_book(a uuid, b text) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    await pool.execute("CREATE FUNCTION probe_other(a uuid) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    errors = []
    async with pool.acquire() as cached, pool.acquire() as fresh:
        await cached.fetchval("SELECT probe_book($1, $2)", uuid.uuid4(), "x")  # asyncpg caches the statement
        await pool.execute("ALTER FUNCTION probe_book(uuid, text) RENAME TO probe_book_v2")
        await pool.execute("DROP FUNCTION probe_other(uuid)")
        for conn, query, args in [
            (cached, "SELECT probe_book($1, $2)", (uuid.uuid4(), "x")),
            (fresh, "SELECT probe_book($1, $2)", (uuid.uuid4(), "x")),
            (cached, "SELECT probe_other($1)", (uuid.uuid4(),)),
        ]:
            with pytest.raises(asyncpg.UndefinedFunctionError) as raised:
                await conn.fetchval(query, *args)
            errors.append(f"{type(raised.value).__name__}: {raised.value}")  # as processing records it
    for i, error in enumerate(errors):
        await pool.execute(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, error_message)"
            " VALUES ($1, 'status-update', $2, '{}', 'dead_letter', $3)",
            org_id,
            f"fn-{i}",
            error,
        )
    async with pool.acquire() as conn:
        groups = sorted(g["count"] for g in await dead_letter_groups(conn))

    assert "probe_book(uuid, text)" in errors[0] and "probe_book(unknown, unknown)" in errors[1]
    assert [1, 2] == groups


@given(
    name=st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
    first=st.lists(st.sampled_from(["uuid", "text", "unknown", "integer", "timestamp with time zone"]), max_size=6),
    second=st.lists(st.sampled_from(["uuid", "text", "unknown", "numeric", "character varying"]), max_size=6),
)
@hsettings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
async def test_argument_lists_never_split_a_function_error(pool, name, first, second):
    """Any function, any two argument lists: one fingerprint (the migration's SQL function itself)."""
    message = "UndefinedFunctionError: function {}({}) does not exist\nHINT:  No function matches."
    one, two = (message.format(name, ", ".join(args)) for args in (first, second))

    assert await pool.fetchval("SELECT error_fingerprint($1) = error_fingerprint($2)", one, two)


async def _dead_letters(pool, org_id, n: int, error: str = "boom: handler broke on call 7") -> None:
    from tests.helpers import status_update

    for i in range(n):
        await insert_delivery(
            pool,
            org_id=org_id,
            event_type="status-update",
            event_id=f"status-update:c-cons-{i}:in-progress",
            payload=status_update(f"c-cons-{i}", "in-progress")["message"],
            max_attempts=1,
            job_id=None,
        )
    await pool.execute(
        "UPDATE webhook_delivery_log SET status = 'dead_letter', attempts = 1, error_message = $1", error
    )


async def _group(web: Any) -> str:
    page = await (await web.get("/console/dead-letters")).text()
    return found(r'href="\?group=([0-9a-f]{32})"', page)


async def test_replaying_a_group_counts_first_then_runs_to_completion_once(web, pool, org_id, broker):
    """The dry run shows 30; confirming freezes them, they all complete, calls are written once each."""
    from tests.helpers import wait_until

    await _dead_letters(pool, org_id, 30)
    await _sign_in(web, ADMIN)
    group = await _group(web)
    dry = await (await web.get(f"/console/dead-letters/replay?group={group}")).text()
    started = await web.post(
        "/console/replays", data={"group": group, "rate": "", "csrf": await _page_csrf(web)}, allow_redirects=False
    )
    replay_path = started.headers["Location"]

    async def completed() -> bool:
        page = await (await web.get(replay_path)).text()
        return 'data-testid="replay-completed">30<' in page and 'data-testid="replay-status">done<' in page

    await wait_until(completed, timeout_s=60)
    record = await pool.fetchrow("SELECT requested_by, matched, replayed, status FROM replays")

    assert 'data-testid="matched">30<' in dry
    assert 302 == started.status and replay_path.startswith("/console/replays/")
    assert ("admin (break-glass)", 30, 30, "done") == tuple(record)
    assert 30 == await pool.fetchval("SELECT count(*) FROM calls")
    assert 1 == await pool.fetchval("SELECT max(replay_count) FROM webhook_delivery_log")


async def _page_csrf(web: Any) -> str:
    page = await (await web.get("/console/")).text()
    return found(r'name="csrf" value="([^"]+)"', page)


async def test_a_cancelled_replay_stops_after_its_batch(web, pool, org_id, broker):
    """At 10 per second, cancelling leaves most of 400 deliveries unreplayed and the record says cancelled."""
    from tests.helpers import wait_until

    await _dead_letters(pool, org_id, 400)
    await _sign_in(web, ADMIN)
    group = await _group(web)
    started = await web.post(
        "/console/replays", data={"group": group, "rate": "10.0", "csrf": await _page_csrf(web)}, allow_redirects=False
    )
    replay_path = started.headers["Location"]
    await wait_until(lambda: pool.fetchval("SELECT replayed > 0 FROM replays"))
    cancelled = await web.post(f"{replay_path}/cancel", data={"csrf": await _page_csrf(web)}, allow_redirects=False)
    await wait_until(
        lambda: pool.fetchval("SELECT lease_until IS NULL OR lease_until < now() + interval '29 s' FROM replays")
    )
    replayed = await pool.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE replay_count > 0")

    assert 302 == cancelled.status
    assert "cancelled" == await pool.fetchval("SELECT status FROM replays")
    assert 0 < replayed < 400


@pytest.mark.slow  # waits for a dead runner's lease in real time
async def test_a_replay_left_by_a_dead_process_is_taken_up(web, pool, org_id, broker):
    """A running replay whose lease ran out (its process died) is finished by this web process."""
    from db import replays
    from tests.helpers import wait_until

    await _dead_letters(pool, org_id, 20)
    group = await pool.fetchval("SELECT DISTINCT error_group FROM webhook_delivery_log")
    async with pool.acquire() as conn, conn.transaction():
        await replays.create_for_group(
            conn, org_id=None, requested_by="admin", description="left behind", group=group, refused=0, rate_per_s=None
        )
        # Its runner claimed it and died: the lease ran out a minute ago.
        await conn.execute(
            "UPDATE replays SET lease_owner = gen_random_uuid(), lease_until = now() - interval '1 minute'"
        )

    await wait_until(lambda: pool.fetchval("SELECT status = 'done' FROM replays"), timeout_s=30)
    await wait_until(lambda: pool.fetchval("SELECT count(*) = 20 FROM calls"), timeout_s=30)


async def test_a_missed_tool_call_shows_the_caller_and_can_be_marked_called_back(web, pool, org_id):
    """The caller's number and request are on the delivery page; marking it records who and when, once."""
    payload = {
        "type": "tool-calls",
        "call": {"id": "call-missed", "customer": {"number": "+14155550123"}},
        "toolCallList": [{"id": "tc-1", "function": {"name": "bookAppointment", "arguments": {"day": "mon"}}}],
    }
    delivery_id = await pool.fetchval(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, answer_by, error_message,"
        "                                  tool_name, customer_number)"
        " VALUES ($1, 'tool-calls', 'tool-call:tc-1', $2, 'missed', now(), 'caller stopped waiting', $3, $4)"
        " RETURNING id",
        org_id,
        payload,
        *dataclasses.astuple(stored(payload, "tool-calls").facts())[1:],
    )
    await _sign_in(web, ADMIN)

    listed = await (await web.get("/console/missed")).text()
    before = await (await web.get(f"/console/deliveries/{delivery_id}")).text()
    csrf = re.findall(r'name="csrf" value="([^"]+)"', before)[-1]
    marked = await web.post(
        f"/console/deliveries/{delivery_id}/called-back",
        data={"csrf": csrf, "note": "booked Tue 10:00"},
        allow_redirects=False,
    )
    again = await web.post(f"/console/deliveries/{delivery_id}/called-back", data={"csrf": csrf}, allow_redirects=False)
    after = await (await web.get(f"/console/deliveries/{delivery_id}")).text()
    record = await pool.fetchrow("SELECT called_by, note FROM call_backs")

    assert "+14155550123" in listed and "bookAppointment" in listed
    assert 'data-testid="caller-number">+14155550123<' in before and "Mark called back" in before
    assert (302, 302) == (marked.status, again.status)
    assert ("admin (break-glass)", "booked Tue 10:00") == tuple(record)
    assert 1 == await pool.fetchval("SELECT count(*) FROM call_backs")
    assert "Called back by admin" in after and "Mark called back" not in after


async def test_search_finds_a_call_its_deliveries_and_a_tool_call(web, pool, org_id):
    """A call id lists its deliveries; a tool-call id or a unique delivery id lands on the delivery page."""
    rows = [
        ("status-update", "status-update:call-s1:ringing", {"type": "status-update", "call": {"id": "call-s1"}}),
        ("end-of-call-report", "end-of-call-report:call-s1", {"type": "end-of-call-report", "call": {"id": "call-s1"}}),
        ("tool-calls", "tool-call:tc-s9", {"type": "tool-calls", "call": {"id": "call-s2"}}),
        ("status-update", "status-update:call-other:ringing", {"type": "status-update", "call": {"id": "call-other"}}),
    ]
    ids = {}
    for event_type, event_id, payload in rows:
        ids[event_id] = await pool.fetchval(
            "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)"
            " VALUES ($1, $2, $3, $4, 'completed') RETURNING id",
            org_id,
            event_type,
            event_id,
            payload,
        )
    await _sign_in(web, ADMIN)

    by_call = await (await web.get("/console/search?q=call-s1")).text()
    by_tool = await web.get("/console/search?q=tc-s9", allow_redirects=False)
    by_prefix = await web.get(
        f"/console/search?q={str(ids['status-update:call-other:ringing'])[:13]}", allow_redirects=False
    )
    nothing = await (await web.get("/console/search?q=no-such-thing")).text()

    assert str(ids["status-update:call-s1:ringing"]) in by_call and str(ids["end-of-call-report:call-s1"]) in by_call
    assert str(ids["status-update:call-other:ringing"]) not in by_call
    assert f"/console/deliveries/{ids['tool-call:tc-s9']}" == by_tool.headers["Location"]
    assert f"/console/deliveries/{ids['status-update:call-other:ringing']}" == by_prefix.headers["Location"]
    assert "Nothing matches" in nothing


async def test_search_by_call_id_uses_the_index(pool):
    """EXPLAIN: a call id is an index probe into the delivery log, not a scan."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT id FROM webhook_delivery_log d WHERE d.vapi_call_id = ANY($1::text[])",
                ["call-1"],
            )
        )

    assert "idx_delivery_log_vapi_call_id" in plan, plan


async def test_without_postgresql_a_page_is_503_not_a_crash(aiohttp_client, web, settings, broker):
    """With PostgreSQL gone, sign-in and a signed-in page answer 503 with the reason, still not cached;
    static files are still served."""
    from ingest.errors import OUTAGE
    from tests.procs import free_port

    down = dataclasses.replace(
        settings,
        admin_token=ADMIN,
        console_session_key=b"k" * 32,
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
    )
    await _sign_in(web, ADMIN)  # a session made while the database was up, same cookie key
    cookie = "; ".join(f"{c.key}={c.value}" for c in web.session.cookie_jar)
    gone = await aiohttp_client(create_app(down, broker=broker))
    page = await gone.get("/console/", headers={"Cookie": cookie}, allow_redirects=False)
    signed = await _sign_in(gone, ADMIN)
    static = await gone.get("/console/static/console.css")

    assert 503 == signed.status and OUTAGE == await signed.text()
    assert 503 == page.status and OUTAGE == await page.text()
    assert "no-store" == page.headers["Cache-Control"]
    assert "Cache-Control" not in static.headers and 200 == static.status


async def test_quarantine_maps_a_sender_and_routes_exactly_its_messages(web, pool, org_id, broker):
    """Two senders quarantined; mapping one routes its 2 messages to the org and leaves the other's alone."""
    from db import quarantine
    from tests.helpers import status_update, wait_until

    for i, sender in enumerate(["asst-q", "asst-q", "asst-other"]):
        message = status_update(f"c-q-{i}", "in-progress")["message"]
        message["call"]["assistantId"] = sender
        await quarantine.insert(
            pool,
            event_type="status-update",
            event_id=f"status-update:c-q-{i}:in-progress",
            assistant_id=sender,
            phone_number_id=None,
            payload=message,
        )
    await _sign_in(web, ADMIN)
    page = await (await web.get("/console/quarantine")).text()
    csrf = found(r'name="csrf" value="([^"]+)"', page)
    routed = await web.post(
        "/console/quarantine/route",
        data={"csrf": csrf, "assistant_id": "asst-q", "phone_number_id": "", "org_id": str(org_id)},
        allow_redirects=False,
    )
    after = await (await web.get(routed.headers["Location"])).text()
    await wait_until(lambda: pool.fetchval("SELECT count(*) = 2 FROM calls"))

    assert 'data-testid="quarantined">2<' in page and "asst-other" in page
    assert 'data-testid="routed">2 messages routed' in after
    assert "asst-q<" not in after and "asst-other" in after
    assert org_id == await pool.fetchval("SELECT org_id FROM agents WHERE vapi_assistant_id = 'asst-q'")


async def test_an_org_token_cannot_open_the_quarantine(web, pool, org_id):
    """Quarantined messages belong to no clinic: an org session gets 403."""
    from db import tokens

    await _sign_in(web, await tokens.create(pool, org_id, name=None))
    resp = await web.get("/console/quarantine", allow_redirects=False)
    confirm = await web.get(f"/console/quarantine/confirm?assistant_id=asst-q&org_id={org_id}", allow_redirects=False)

    assert 403 == resp.status
    assert 403 == confirm.status


async def test_clinics_create_edit_and_revoke_a_token(web, pool):
    """Create a clinic, change its zone and assistant, refuse a bad zone with the reason, revoke its token."""
    from db import tokens

    await _sign_in(web, ADMIN)
    csrf = await _page_csrf(web)
    created = await web.post(
        "/console/clinics",
        data={"csrf": csrf, "name": "Harbour Dental", "timezone": "UTC", "region": "gb"},
        allow_redirects=False,
    )
    clinic_path = created.headers["Location"]
    org_id = clinic_path.rsplit("/", 1)[1]
    form = {"csrf": csrf, "name": "Harbour Dental", "region": "GB", "assistant_id": "asst-harbour"}
    hours = {f"hours_{day}": "08:30-18:00" for day in ("mon", "tue", "wed", "thu")} | {
        "hours_fri": "",
        "hours_sat": "09:00-12:00",
    }
    saved = await web.post(clinic_path, data={**form, **hours, "timezone": "Europe/London"}, allow_redirects=False)
    refused = await web.post(clinic_path, data={**form, "timezone": "Mars/Olympus"}, allow_redirects=False)
    bad_hours = await web.post(
        clinic_path, data={**form, "timezone": "UTC", "hours_sun": "10:00-09:00"}, allow_redirects=False
    )
    token = await tokens.create(pool, org_id, name="desk")
    token_id = (await tokens.list_tokens(pool))[0]["id"]
    revoked = await web.post(
        f"{clinic_path}/revoke", data={"csrf": csrf, "token_id": str(token_id)}, allow_redirects=False
    )
    page = await (await web.get(clinic_path)).text()
    row = await pool.fetchrow(
        "SELECT name, timezone, default_region, vapi_assistant_id, business_hours FROM organizations WHERE id = $1",
        uuid.UUID(org_id),
    )

    assert (302, 302, 400, 400, 302) == (created.status, saved.status, refused.status, bad_hours.status, revoked.status)
    assert "not an IANA time zone" in await refused.text()
    assert "sun" in await bad_hours.text()
    assert ("Harbour Dental", "Europe/London", "GB", "asst-harbour") == tuple(row)[:4]
    assert {"mon", "tue", "wed", "thu", "sat"} == set(row["business_hours"]) and "fri" not in row["business_hours"]
    assert ["09:00", "12:00"] == row["business_hours"]["sat"] and 'value="08:30-18:00"' in page
    assert "asst-harbour" in page and "Revoke" not in page
    assert await tokens.holder_of(pool, token) is None


async def test_an_org_token_cannot_manage_clinics(web, pool, org_id):
    """Clinic management is the admin's: an org session gets 403 on the list and on its own clinic."""
    from db import tokens

    await _sign_in(web, await tokens.create(pool, org_id, name=None))
    statuses = [
        (await web.get(path, allow_redirects=False)).status
        for path in ("/console/clinics", f"/console/clinics/{org_id}")
    ]

    assert [403, 403] == statuses


async def test_a_payload_opens_only_on_request_and_each_opening_is_recorded(web, pool, org_id):
    """The page holds no payload text; POST opens it and records who (the admin, then the clinic's own token
    under row-level security); another clinic's token opens nothing and records nothing."""
    from db import orgs, tokens

    delivery_id = await pool.fetchval(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)"
        " VALUES ($1, 'end-of-call-report', 'eocr:call-r1', $2, 'completed') RETURNING id",
        org_id,
        {"type": "end-of-call-report", "artifact": {"transcript": "my knee hurts since Tuesday, it's <b>sore</b>"}},
    )
    path = f"/console/deliveries/{delivery_id}"
    await _sign_in(web, ADMIN)

    closed = await (await web.get(path)).text()
    csrf = await _page_csrf(web)
    opened = await web.post(f"{path}/payload", data={"csrf": csrf})
    opened_text = await opened.text()
    after = await (await web.get(path)).text()
    other = await orgs.create_org(pool, name="Other clinic")
    web.session.cookie_jar.clear()
    await _sign_in(web, await tokens.create(pool, other, name="desk"))
    foreign = await web.post(f"{path}/payload", data={"csrf": await _page_csrf(web)})
    web.session.cookie_jar.clear()
    own_token = await tokens.create(pool, org_id, name="front desk")
    await _sign_in(web, own_token)
    own = await web.post(f"{path}/payload", data={"csrf": await _page_csrf(web)})

    assert "knee" not in closed and "Never opened." in closed
    assert 200 == opened.status and "my knee hurts since Tuesday" in opened_text
    # As written (no JSON escapes such as \u0027), and escaped for HTML: the text, never markup.
    assert "it&#39;s &lt;b&gt;sore&lt;/b&gt;" in opened_text and "\\u0027" not in opened_text
    assert "knee" not in after and "Opened by admin (break-glass) at" in after
    assert 404 == foreign.status and "knee" not in await foreign.text()
    assert 200 == own.status and "my knee hurts since Tuesday" in await own.text()
    recorded = await pool.fetch("SELECT revealed_by, org_id FROM reveals ORDER BY id")
    assert [("admin (break-glass)", org_id), ("front desk (clinic token)", org_id)] == [tuple(r) for r in recorded]


async def test_the_week_calendar_shows_bookings_linked_to_their_tool_calls(web, settings, pool, org_id):
    """Two bookings made by tool calls over HTTP, one then cancelled: the week shows one, or both with
    ``cancelled=1``, each linking to the delivery of the tool call that booked it; another clinic sees none;
    searching the patient's number links to the appointment's week."""
    from db import orgs, tokens
    from tests.helpers import book_args, business_day, post, tool_call

    day = business_day()
    replies = []
    for tool_call_id, hhmm, phone in (("t-cal-1", "10:00", "020 7183 8750"), ("t-cal-2", "14:30", "020 7183 8751")):
        resp = await post(
            web, settings, tool_call(tool_call_id, "bookClinicAppointment", book_args(day, hhmm, phone=phone))
        )
        replies.append((await resp.json())["results"][0]["result"])
    second = found(r"Appointment id ([0-9a-f-]{36})", replies[1])
    await post(web, settings, tool_call("t-cal-3", "cancelAppointment", {"appointmentId": second}))
    booked_by = await pool.fetchval("SELECT id FROM webhook_delivery_log WHERE event_id = 'tool-call:t-cal-1'")
    await _sign_in(web, ADMIN)

    week = await (await web.get(f"/console/appointments?org={org_id}&week={day}")).text()
    with_cancelled = await (await web.get(f"/console/appointments?org={org_id}&week={day}&cancelled=1")).text()
    results = await (await web.get("/console/search", params={"q": "+442071838750"})).text()
    other = await orgs.create_org(pool, name="Other clinic", timezone="Europe/London")
    web.session.cookie_jar.clear()
    await _sign_in(web, await tokens.create(pool, other, name="desk"))
    foreign = await (await web.get(f"/console/appointments?org={org_id}&week={day}")).text()

    assert 'data-testid="appointment-count">1<' in week and "10:00-10:30" in week and "14:30" not in week
    assert f'href="/console/deliveries/{booked_by}" data-testid="booked-by"' in week
    assert 'data-testid="appointment-count">2<' in with_cancelled and "<em>cancelled</em>" in with_cancelled
    assert 'data-testid="appointment-count">0<' in foreign and "Other clinic" in foreign
    assert f'href="/console/appointments?org={org_id}&week={day}&cancelled=1"' in results


async def test_no_console_read_scans_the_delivery_log(pool, org_id):
    """EXPLAIN of every query the overview, dead letters, missed calls, search and calendar run (seq scans
    priced out): none reads the whole delivery log; each uses an index, so page cost does not grow with it."""
    from datetime import UTC, datetime, timedelta

    from db import appointments, call_backs, dead_letters, deliveries, throughput
    from db import search as search_db

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # a tiny test table would be scanned anyway
        spy: Any = Explaining(conn)
        await deliveries.count_by_status(spy, completed=False)
        await deliveries.oldest_pending_age_s(spy)
        await throughput.per_minute(spy)
        await throughput.tool_outcomes(spy)
        await dead_letters.dead_letter_groups(spy)
        await dead_letters.dead_letters_in_group(spy, "0" * 32)
        await call_backs.missed_calls(spy)
        for q in ("call-1", "+14155550123", "0531dd9a", "asst-test"):
            await search_db.search(spy, q, tool_call_key=tool_call_key(q))
        now = datetime.now(UTC)
        await appointments.in_range(spy, org_id, now, now + timedelta(days=7), cancelled=True)

    scans = [plan for _, plan in spy.plans if "Seq Scan on webhook_delivery_log" in plan]
    assert len(spy.plans) >= 20
    assert [] == scans


async def test_the_overview_draws_the_last_hour_and_tool_outcomes(web, pool, org_id):
    """Received and completed per minute (60 points, totals over the hour), the backlog without a count of
    completed, and tool calls by outcome, each call once (not the message's own row): answered, refused
    (slot taken), missed."""
    await pool.execute(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, received_at, completed_at)"
        " SELECT $1, 'status-update', 'su:' || i, '{}', CASE WHEN i <= 6 THEN 'completed' ELSE 'pending' END,"
        "        now() - interval '5 minutes', CASE WHEN i <= 6 THEN now() - interval '2 minutes' END"
        "   FROM generate_series(1, 10) i",
        org_id,
    )
    await pool.execute(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, received_at, result,"
        "                                  tool_name)"
        " VALUES ($1, 'status-update', 'old', '{}', 'completed', now() - interval '2 hours', NULL, NULL),"
        " ($1, 'tool-calls', 'tool-call:a', '{}', 'completed', now(), '{\"name\": \"bookClinicAppointment\", \"result\": \"Booked\"}', $2),"
        " ($1, 'tool-calls', 'tool-call:b', '{}', 'completed', now(), '{\"name\": \"bookClinicAppointment\", \"error\": \"taken\"}', $2),"
        ' ($1, \'tool-calls\', \'tool-call:c\', \'{"toolCallList": [{"function": {"name": "bookClinicAppointment"}}]}\','
        "  'missed', now(), NULL, $2),"
        # The message's own row beside its calls (ingest/webhook/tool_replies.py): not a call of its own.
        " ($1, 'tool-calls', 'tool-calls:message:abc',"
        ' \'{"toolCallList": [{"function": {"name": "bookClinicAppointment"}}]}\', \'completed\', now(),'
        ' \'{"applied": false, "reason": "tool-call message; each tool call is a delivery of its own"}\', $2)',
        org_id,
        "bookClinicAppointment",
    )
    await _sign_in(web, ADMIN)

    page = await (await web.get("/console/")).text()
    points = re.findall(r'<polyline class="line (\w+)" points="([^"]+)"', page)

    assert 'data-testid="received-hour">14<' in page  # the 2-hour-old delivery is outside the window
    assert 'data-testid="completed-hour">6<' in page
    assert ["received", "completed"] == [name for name, _ in points]
    assert [60, 60] == [len(p.split()) for _, p in points]
    assert 'data-testid="count-pending">4<' in page and "count-completed" not in page
    assert re.search(r"<td>bookClinicAppointment</td><td>1</td><td>1</td><td class=\"bad\">1</td>", page), page


async def test_the_quarantine_page_lists_the_largest_senders_only(web, pool, monkeypatch):
    """A flood of made-up senders cannot make the page unbounded: it lists the largest SENDER_LIMIT, and
    says how many messages are unrouted in all."""
    from ingest.console import quarantine

    monkeypatch.setattr(quarantine, "SENDER_LIMIT", 2)
    await pool.execute(
        "INSERT INTO webhook_quarantine (event_type, event_id, assistant_id, payload)"
        " SELECT 'status-update', 'q-' || g || '-' || n, 'asst-' || g, '{}'"
        "   FROM generate_series(1, 3) g, generate_series(1, g) n"
    )
    await _sign_in(web, ADMIN)

    page = await (await web.get("/console/quarantine")).text()

    assert "asst-3" in page and "asst-2" in page and "asst-1" not in page
    assert "The 2 largest senders of 6 unrouted messages." in page


async def test_a_group_pages_through_every_dead_letter_newest_first(web, pool, org_id):
    """120 dead letters of one group, ten of them received at the same instant: following "Older" from the
    first page shows each exactly once, newest first, in pages of 50, 50 and 20; a bad cursor is a 400."""
    await pool.execute(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, attempts, received_at,"
        "                                  error_message)"
        " SELECT $1, 'status-update', 'dl:' || i, '{}', 'dead_letter', 5,"
        "        now() - greatest(i, 10) * interval '1 s', 'relation \"calls_' || i || '\" does not exist'"
        "   FROM generate_series(1, 120) i",
        org_id,
    )
    expected = [
        r["id"] for r in await pool.fetch("SELECT id FROM webhook_delivery_log ORDER BY received_at DESC, id DESC")
    ]
    await _sign_in(web, ADMIN)
    url: str | None = f"/console/dead-letters?group={await _group(web)}"
    pages: list[list[str]] = []
    while url and len(pages) < 5:  # a cursor that does not advance would loop forever
        page = await (await web.get(url)).text()
        pages.append(re.findall(r'href="/console/deliveries/([0-9a-f-]{36})"', page))
        older = re.search(
            r'href="(/console/dead-letters\?group=[0-9a-f]{32}&amp;before=[^"]+)" data-testid="older"', page
        )
        url = older.group(1).replace("&amp;", "&") if older else None
    bad = await web.get(f"/console/dead-letters?group={'0' * 32}&before=yesterday_1")

    assert [50, 50, 20] == [len(p) for p in pages]
    assert [str(i) for i in expected] == [i for p in pages for i in p]
    assert 400 == bad.status and "before must be" in await bad.text()


@pytest.mark.parametrize(
    ("headers", "console_tls", "secure"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"X-Forwarded-Proto": "https"}, False, True),
        ({"X-Forwarded-Proto": "HTTPS"}, False, True),
        ({"X-Forwarded-Proto": "https, http"}, False, True),
        ({"X-Forwarded-Proto": "http"}, False, False),
        ({"Forwarded": "proto=https"}, False, True),
        ({"Forwarded": 'for=192.0.2.1;proto="https", for=10.0.0.1;proto=http'}, False, True),
        ({"Forwarded": "for=192.0.2.1;proto=http"}, False, False),
    ],
)
async def test_the_cookie_is_secure_whenever_the_browser_came_over_tls(
    aiohttp_client, settings, broker, headers, console_tls, secure
):
    """Behind a proxy that says https in any of the usual ways, or with CONSOLE_TLS=1, the session cookie is
    Secure; over plain HTTP it is not (issue 18: only the exact 'X-Forwarded-Proto: https' counted)."""
    configured = dataclasses.replace(
        settings, admin_token=ADMIN, console_session_key=b"k" * 32, console_tls=console_tls
    )
    client = await aiohttp_client(create_app(configured, broker=broker))

    # The sign-in page sets the session cookie (it carries the CSRF token), so it shows the flags; a
    # Secure one is then, rightly, never sent back over this plain-HTTP test client.
    resp = await client.get("/console/login", headers=headers)

    assert 200 == resp.status
    assert secure == ("Secure" in resp.headers["Set-Cookie"])


async def test_discarding_needs_a_reason_a_dead_letter_and_the_clinics_own_session(web, pool, org_id):
    """Discard refuses an empty reason (400), acts only on a dead letter (a second discard changes nothing),
    and another clinic's session cannot discard ours (it sees no such delivery)."""
    from db import orgs, tokens

    await _dead_letters(pool, org_id, 1)
    delivery_id = await pool.fetchval("SELECT id FROM webhook_delivery_log")
    other = await orgs.create_org(pool, name="Other clinic", timezone="UTC", region="US")
    await _sign_in(web, await tokens.create(pool, other, name=None))
    csrf = await _page_csrf(web)
    foreign = await web.post(
        f"/console/deliveries/{delivery_id}/discard", data={"csrf": csrf, "reason": "not ours"}, allow_redirects=False
    )
    await _sign_in(web, ADMIN)
    csrf = await _page_csrf(web)
    empty = await web.post(
        f"/console/deliveries/{delivery_id}/discard", data={"csrf": csrf, "reason": "  "}, allow_redirects=False
    )
    first = await web.post(
        f"/console/deliveries/{delivery_id}/discard", data={"csrf": csrf, "reason": "duplicate"}, allow_redirects=False
    )
    second = await web.post(
        f"/console/deliveries/{delivery_id}/discard", data={"csrf": csrf, "reason": "again"}, allow_redirects=False
    )
    replay = await web.post(f"/console/deliveries/{delivery_id}/replay", data={"csrf": csrf}, allow_redirects=False)

    assert foreign.headers["Location"].endswith("?done=not-discarded")
    assert 400 == empty.status and "say why" in await empty.text()
    assert first.headers["Location"].endswith("?done=discarded")
    assert second.headers["Location"].endswith("?done=not-discarded")
    assert replay.headers["Location"].endswith("?done=not-replayed")
    assert ("discarded", 0) == tuple(
        await pool.fetchrow("SELECT status, replay_count FROM webhook_delivery_log WHERE id = $1", delivery_id)
    )
    assert [("admin (break-glass)", "duplicate")] == [
        tuple(r) for r in await pool.fetch("SELECT discarded_by, reason FROM discards")
    ]


async def test_a_missed_tool_call_is_never_replayed_from_its_page(web, pool, org_id):
    """The replay button's POST for a synchronous tool call is 409 with the reason; the row is untouched."""
    await pool.execute(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status, answer_by)"
        " VALUES ($1, 'tool-calls', 'tool-call:tc-x', '{}', 'dead_letter', now())",
        org_id,
    )
    delivery_id = await pool.fetchval("SELECT id FROM webhook_delivery_log")
    await _sign_in(web, ADMIN)
    csrf = await _page_csrf(web)

    refused = await web.post(f"/console/deliveries/{delivery_id}/replay", data={"csrf": csrf}, allow_redirects=False)

    assert 409 == refused.status and "never replayed" in await refused.text()
    assert 0 == await pool.fetchval("SELECT replay_count FROM webhook_delivery_log")


async def test_a_replay_page_says_when_everything_failed_again(web, pool, org_id, broker):
    """A replay whose deliveries all fail again is shown as such, not as "done" with an empty bar."""
    from tests.helpers import wait_until

    await _dead_letters(pool, org_id, 5)
    await pool.execute('UPDATE webhook_delivery_log SET payload = \'{"type": "status-update"}\'')  # fails again
    await _sign_in(web, ADMIN)
    group = await _group(web)
    started = await web.post(
        "/console/replays", data={"group": group, "rate": "", "csrf": await _page_csrf(web)}, allow_redirects=False
    )

    async def settled() -> bool:
        page = await (await web.get(started.headers["Location"])).text()
        return "Every delivery replayed failed again" in page

    await wait_until(settled, timeout_s=60)
    page = await (await web.get(started.headers["Location"])).text()

    assert 'data-testid="replay-failed">5<' in page and 'data-testid="replay-completed">0<' in page


async def test_search_links_an_appointment_to_the_week_its_clinic_sees_it_in(web, pool):
    """Monday 08:00 in Auckland is Sunday 19:00 UTC, the week before: the link carries the clinic's day."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from db import orgs

    clinic = await orgs.create_org(pool, name="Auckland", timezone="Pacific/Auckland")
    starts = datetime(2026, 12, 14, 8, 0, tzinfo=ZoneInfo("Pacific/Auckland"))
    await pool.execute(
        "WITH l AS (INSERT INTO leads (org_id, phone) VALUES ($1, '+6495550100') RETURNING id)"
        " INSERT INTO appointments (org_id, contact_id, scheduled_at, duration_minutes, ends_at)"
        " SELECT $1, l.id, $2::timestamptz, 30, $2::timestamptz + interval '30 minutes' FROM l",
        clinic,
        starts,
    )
    await _sign_in(web, ADMIN)

    results = await (await web.get("/console/search", params={"q": "+6495550100"})).text()

    assert f'href="/console/appointments?org={clinic}&week=2026-12-14&cancelled=1"' in results
    assert "2026-12-14 08:00 NZDT" in results


async def test_a_tool_call_nested_past_the_recursion_limit_still_has_a_page(web, pool, org_id):
    """Arguments nested 900 deep: the row decodes, but walking the arguments again for encrypted values
    would pass Python's recursion limit; the delivery page and its reveal still answer 200."""
    nested = '{"a": ' * 900 + '{"v": "x"}' + "}" * 900
    payload = '{"type": "tool-calls", "toolCallList": [{"id": "tc-deep", "function": {"name": "f", "arguments": '
    payload += nested + "}}]}"
    delivery_id = await pool.fetchval(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)"
        " VALUES ($1, 'tool-calls', 'tool-call:tc-deep', $2::text::jsonb, 'completed') RETURNING id",
        org_id,
        payload,
    )
    await _sign_in(web, ADMIN)

    page = await web.get(f"/console/deliveries/{delivery_id}")
    opened = await web.post(f"/console/deliveries/{delivery_id}/payload", data={"csrf": await _page_csrf(web)})

    assert (200, 200) == (page.status, opened.status)
