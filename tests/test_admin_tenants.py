"""Tenant management over the admin API (real HTTP, real PostgreSQL): orgs, mappings, tokens and revocation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ingest.app import create_app

ADMIN = "admin-token-0123456789"


@pytest.fixture
async def api(aiohttp_client, settings, app_broker) -> Any:
    """The app with ADMIN_TOKEN set (a worker only for tests taking ``broker``)."""
    return await aiohttp_client(create_app(dataclasses.replace(settings, admin_token=ADMIN), broker=app_broker))


def _auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_onboarding_a_clinic_over_the_api_then_revoking_its_token(api):
    """Create an org, update its hours, map an assistant and a number, issue a token, see it work, revoke it: 401."""
    created = await api.post(
        "/api/orgs",
        json={"name": "Harbour Dental", "timezone": "Europe/London", "default_region": "gb"},
        headers=_auth(),
    )
    org = await created.json()
    org_id = org["id"]
    patched = await api.patch(
        f"/api/orgs/{org_id}",
        json={"business_hours": {"mon": ["08:00", "12:00"], "sat": ["09:00", "11:30"]}, "vapi_assistant_id": "asst-h"},
        headers=_auth(),
    )
    number = await api.post("/api/phone-numbers", json={"org_id": org_id, "phone_number_id": "pn-h"}, headers=_auth())
    token = (await (await api.post("/api/tokens", json={"org_id": org_id, "name": "desk"}, headers=_auth())).json())[
        "token"
    ]
    detail = await (await api.get(f"/api/orgs/{org_id}", headers=_auth())).json()
    before = await api.get("/api/webhook-metrics/queue-health", headers=_auth(token))
    token_id = detail["tokens"][0]["id"]
    revoked = await api.delete(f"/api/tokens/{token_id}", headers=_auth())
    after = await api.get("/api/webhook-metrics/queue-health", headers=_auth(token))
    again = await api.delete(f"/api/tokens/{token_id}", headers=_auth())

    assert (201, "GB") == (created.status, org["default_region"])
    assert 200 == patched.status
    assert {"mon": ["08:00", "12:00"], "sat": ["09:00", "11:30"]} == detail["business_hours"]
    assert ["asst-h"] == [a["vapi_id"] for a in detail["assistants"]]
    assert 201 == number.status
    assert ["pn-h"] == [p["vapi_id"] for p in detail["phone_numbers"]]
    assert (200, 200, 401, 404) == (before.status, revoked.status, after.status, again.status)


async def test_mappings_list_and_remove(api, org_id):
    """A mapping shows in the list with its org, is refused for a second org (409), and can be removed once."""
    await api.post("/api/assistants", json={"org_id": str(org_id), "assistant_id": "asst-x"}, headers=_auth())
    other = await (await api.post("/api/orgs", json={"name": "Other"}, headers=_auth())).json()
    clash = await api.post("/api/assistants", json={"org_id": other["id"], "assistant_id": "asst-x"}, headers=_auth())
    listed = await (await api.get(f"/api/assistants?org_id={org_id}", headers=_auth())).json()
    removed = await api.delete("/api/assistants/asst-x", headers=_auth())
    gone = await api.delete("/api/assistants/asst-x", headers=_auth())

    assert 409 == clash.status
    assert [("asst-test", str(org_id)), ("asst-x", str(org_id))] == [
        (r["vapi_id"], r["org_id"]) for r in listed["items"]
    ]
    assert (200, 404) == (removed.status, gone.status)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"default_region": "USA"}, "not a 2-letter region"),
        ({"business_hours": {"fri": ["18:00", "09:00"]}}, "not after opening"),
        ({"business_hours": {"funday": ["09:00", "17:00"]}}, "not a weekday"),
        ({"business_hours": {"mon": ["9am", "5pm"]}}, "not a time HH:MM"),
        ({"name": ""}, "name must be 1 to 200 characters"),
        ({"colour": "blue"}, "unknown field 'colour'"),
    ],
)
async def test_bad_org_settings_are_400_with_the_reason(api, org_id, body, reason):
    """Each bad field is refused with a reason naming it, and nothing changes."""
    resp = await api.patch(f"/api/orgs/{org_id}", json=body, headers=_auth())

    assert 400 == resp.status
    assert reason in (await resp.json())["error"]


async def test_an_org_token_cannot_manage_tenants(api, org_id, pool):
    """Org tokens see their own deliveries but get 403 from every tenant endpoint."""
    from db import tokens

    token = await tokens.create(pool, org_id, name=None)
    statuses = [
        (await api.get("/api/orgs", headers=_auth(token))).status,
        (await api.get(f"/api/orgs/{org_id}", headers=_auth(token))).status,
        (await api.post("/api/tokens", json={"org_id": str(org_id)}, headers=_auth(token))).status,
        (await api.get("/api/tokens", headers=_auth(token))).status,
    ]

    assert [403, 403, 403, 403] == statuses


async def test_queue_health_shows_when_scheduler_jobs_last_ran(api, pool):
    """A job run through the scheduler's wrapper appears in queue-health with its age and rows (admin token)."""
    from workers.scheduler import run_exclusively

    async def job() -> int:
        return 7

    await run_exclusively(pool, "sweep", job)
    health = await (await api.get("/api/webhook-metrics/queue-health", headers=_auth())).json()

    assert 7 == health["scheduler"]["sweep"]["last_rows"]
    assert 0 <= health["scheduler"]["sweep"]["age_s"] < 60


async def test_a_value_postgresql_cannot_store_is_400_not_500(api, org_id):
    """A NUL in an assistant id (found by schemathesis) is refused with the reason; nothing is mapped."""
    resp = await api.post("/api/assistants", json={"org_id": str(org_id), "assistant_id": "a\u0000b"}, headers=_auth())
    listed = await (await api.get("/api/assistants", headers=_auth())).json()

    assert 400 == resp.status
    assert "cannot be stored" in (await resp.json())["error"]
    assert ["asst-test"] == [r["vapi_id"] for r in listed["items"]]


async def test_a_tokens_last_use_is_listed_to_the_minute(api, org_id, pool):
    """``last_used_at`` is empty until the token is used, set by its first call, left alone by calls within
    a minute (no write per request), and moved by the next call after that; the listing shows it."""
    from db import tokens

    token = await tokens.create(pool, org_id, name="front desk")
    never = await pool.fetchval("SELECT last_used_at FROM api_tokens")
    await api.get("/api/webhook-metrics/statistics", headers=_auth(token))
    first = await pool.fetchval("SELECT last_used_at FROM api_tokens")
    await api.get("/api/webhook-metrics/statistics", headers=_auth(token))
    again = await pool.fetchval("SELECT last_used_at FROM api_tokens")
    await pool.execute("UPDATE api_tokens SET last_used_at = last_used_at - interval '61 s'")
    await api.get("/api/webhook-metrics/statistics", headers=_auth(token))
    later = await pool.fetchval("SELECT last_used_at FROM api_tokens")
    listed = (await (await api.get("/api/tokens", headers=_auth())).json())["items"]

    assert never is None and first is not None
    assert first == again
    assert later > first
    assert [later.isoformat()] == [t["last_used_at"] for t in listed]
