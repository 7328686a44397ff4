"""The console's sign-in, session, CSRF and headers over real HTTP (the browser tests drive the pages)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from ingest.app import create_app
from ingest.console import signin

ADMIN = "console-admin-token-0123456789"
PAGES = ["/console/", "/console/dead-letters", "/console/deliveries/00000000-0000-0000-0000-000000000000"]


@pytest.fixture
async def web(aiohttp_client, settings, broker) -> Any:
    """The app with ADMIN_TOKEN and a fixed console session key."""
    signin.FAILURES.seen.clear()
    configured = dataclasses.replace(settings, admin_token=ADMIN, console_session_key=b"k" * 32)
    return await aiohttp_client(create_app(configured, broker=broker))


async def _csrf(web: Any) -> str:
    page = await (await web.get("/console/login")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


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
    wrong = [(await _sign_in(web, f"wrong-{i}")).status for i in range(signin.MAX_FAILURES)]
    limited = await _sign_in(web, ADMIN)

    assert [401] * signin.MAX_FAILURES == wrong
    assert 429 == limited.status
    assert signin.MAX_FAILURES == counted("failed") - failed_before
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
    from db.console import dead_letter_groups

    async with pool.acquire() as conn:
        groups = {g["fingerprint"]: g["count"] for g in await dead_letter_groups(conn)}

    assert {
        "relation <value> does not exist": 2,
        "timeout after <n> ms on <id>": 2,
        "handler broke": 1,
    } == groups
