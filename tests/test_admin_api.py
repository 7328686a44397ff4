"""The admin API over real HTTP: tokens, row-level security per org, parameters, replay, OpenAPI."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from openapi_spec_validator import validate

from db import orgs
from db.tokens import token_sha256
from ingest.app import create_app
from tests.helpers import insert_delivery, status_update, wait_until

ADMIN = "admin-token-0123456789"
PREFIX = "/api/webhook-metrics"


@pytest.fixture
async def api(aiohttp_client, settings, app_broker) -> Any:
    """The app with ADMIN_TOKEN set (a worker only for tests taking ``broker``)."""
    return await aiohttp_client(create_app(dataclasses.replace(settings, admin_token=ADMIN), broker=app_broker))


async def _org_token(pool, org_id: uuid.UUID) -> str:
    token = f"vit_{uuid.uuid4().hex}"
    await pool.execute("INSERT INTO api_tokens (org_id, token_sha256) VALUES ($1, $2)", org_id, token_sha256(token))
    return token


async def _seed(pool, org_id: uuid.UUID, prefix: str, statuses: list[str]) -> list[uuid.UUID]:
    ids = []
    for i, status in enumerate(statuses):
        message = status_update(f"{prefix}-{i}", "in-progress")["message"]
        ids.append(
            await insert_delivery(
                pool,
                org_id=org_id,
                event_type="status-update",
                event_id=f"status-update:{prefix}-{i}:in-progress",
                payload=message,
                max_attempts=3,
                job_id=None,
                status=status,
            )
        )
    await pool.execute(
        "UPDATE webhook_delivery_log SET error_message = 'boom', attempts = 3, last_attempt_at = now()"
        " WHERE status IN ('failed', 'dead_letter')"
    )
    return ids


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {ADMIN}"}])
async def test_missing_or_wrong_token_is_401(api, header):
    """No token, an unknown token, or the wrong scheme: 401 with a reason."""
    resp = await api.get(f"{PREFIX}/queue-health", headers=header)

    assert 401 == resp.status
    assert "error" in await resp.json()


async def test_org_token_sees_only_its_org_and_admin_sees_all(api, pool, org_id):
    """Dead-letter lists: the org token gets its own rows only (RLS), the admin token every org's."""
    other = await orgs.create_org(pool, name="Other clinic")
    await _seed(pool, org_id, "mine", ["dead_letter"] * 2)
    await _seed(pool, other, "theirs", ["dead_letter"] * 3)
    token = await _org_token(pool, org_id)

    mine = await (await api.get(f"{PREFIX}/dead-letter-queue", headers=_auth(token))).json()
    everything = await (await api.get(f"{PREFIX}/dead-letter-queue", headers=_auth(ADMIN))).json()

    assert 2 == mine["total"] and {str(org_id)} == {i["org_id"] for i in mine["items"]}
    assert 5 == everything["total"]


async def test_org_token_cannot_replay_or_see_another_orgs_delivery(api, pool, org_id, broker):
    """retry-failed on another org's delivery is 404, and a filtered replay by that org's id replays nothing."""
    other = await orgs.create_org(pool, name="Other clinic")
    theirs = await _seed(pool, other, "theirs", ["dead_letter"])
    token = await _org_token(pool, org_id)

    retry = await api.post(f"{PREFIX}/retry-failed/{theirs[0]}", headers=_auth(token))
    bulk = await api.post(
        f"{PREFIX}/replay", headers=_auth(token), json={"status": "dead_letter", "org_id": str(other)}
    )

    assert 404 == retry.status
    assert {"matched": 0, "replayed": 0} == await bulk.json()
    assert "dead_letter" == await pool.fetchval("SELECT status FROM webhook_delivery_log WHERE id = $1", theirs[0])


async def test_retry_failed_replays_one_delivery(api, pool, org_id, broker):
    """retry-failed/{id} puts a dead letter back through processing; a completed one is 409; unknown 404."""
    ids = await _seed(pool, org_id, "r", ["dead_letter", "completed"])

    ok = await api.post(f"{PREFIX}/retry-failed/{ids[0]}", headers=_auth(ADMIN))
    done = await api.post(f"{PREFIX}/retry-failed/{ids[1]}", headers=_auth(ADMIN))
    unknown = await api.post(f"{PREFIX}/retry-failed/{uuid.uuid4()}", headers=_auth(ADMIN))
    malformed = await api.post(f"{PREFIX}/retry-failed/not-a-uuid", headers=_auth(ADMIN))

    assert {"matched": 1, "replayed": 1} == await ok.json()
    assert (409, 404, 400) == (done.status, unknown.status, malformed.status)
    await wait_until(
        lambda: pool.fetchval("SELECT status = 'completed' FROM webhook_delivery_log WHERE id = $1", ids[0])
    )


async def test_replay_dry_run_counts_and_filters_apply(api, pool, org_id):
    """dry_run counts without changing anything; type and error filters narrow the match."""
    await _seed(pool, org_id, "d", ["dead_letter"] * 4 + ["failed"])

    dry = await (
        await api.post(
            f"{PREFIX}/replay", headers=_auth(ADMIN), json={"status": ["dead_letter", "failed"], "dry_run": True}
        )
    ).json()
    narrowed = await (
        await api.post(
            f"{PREFIX}/replay", headers=_auth(ADMIN), json={"status": "failed", "type": "hang", "dry_run": True}
        )
    ).json()

    assert {"matched": 5, "replayed": 0} == dry
    assert {"matched": 0, "replayed": 0} == narrowed
    assert 4 == await pool.fetchval("SELECT count(*) FROM webhook_delivery_log WHERE status = 'dead_letter'")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("delivery-stats?range=forever", "range"),
        ("delivery-stats?range=365d", "range"),
        ("recent-failures?limit=0", "limit"),
        ("recent-failures?limit=ten", "limit"),
        ("dead-letter-queue?page=-1", "page"),
    ],
)
async def test_bad_parameters_are_400_with_the_reason(api, path, reason):
    """Every malformed query parameter is a 400 naming it."""
    resp = await api.get(f"{PREFIX}/{path}", headers=_auth(ADMIN))

    assert 400 == resp.status
    assert reason in (await resp.json())["error"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"status": "completed"},
        {"dry_run": True},
        {"status": "dead_letter", "since": "yesterday"},
        {"status": "dead_letter", "ids": ["x"]},
        {"status": "dead_letter", "bogus": 1},
        {"status": "dead_letter", "error": "' OR 1=1 --"},
    ],
)
async def test_bad_replay_bodies_are_400_and_sql_metacharacters_are_harmless(api, pool, org_id, body):
    """Malformed replay requests get 400; a filter full of SQL metacharacters is just a string that matches nothing."""
    await _seed(pool, org_id, "m", ["dead_letter"])

    resp = await api.post(f"{PREFIX}/replay", headers=_auth(ADMIN), json=body)

    if isinstance(body, dict) and body.get("error"):
        assert {"matched": 0, "replayed": 0} == await resp.json()
    else:
        assert 400 == resp.status
    assert "dead_letter" == await pool.fetchval("SELECT status FROM webhook_delivery_log")


async def test_statistics_endpoints(api, pool, org_id):
    """delivery-stats, processing-time, recent-failures and queue-health report what the log holds."""
    await _seed(pool, org_id, "s", ["completed"] * 3 + ["dead_letter"])
    await pool.execute(
        "UPDATE webhook_delivery_log SET last_attempt_at = now() - interval '20 ms',"
        " completed_at = now() WHERE status = 'completed'"
    )

    stats = await (await api.get(f"{PREFIX}/delivery-stats?range=1h", headers=_auth(ADMIN))).json()
    timing = await (await api.get(f"{PREFIX}/processing-time", headers=_auth(ADMIN))).json()
    failures = await (await api.get(f"{PREFIX}/recent-failures?limit=5", headers=_auth(ADMIN))).json()
    health = await (await api.get(f"{PREFIX}/queue-health", headers=_auth(ADMIN))).json()

    [row] = stats["types"]
    assert (4, 3, 1, 0.75) == (row["received"], row["completed"], row["dead_lettered"], row["success_rate"])
    assert 3 == timing["types"][0]["samples"] and timing["types"][0]["p50_ms"] >= 19
    assert 1 == len(failures["items"]) and "boom" == failures["items"][0]["error_message"]
    assert 1 == health["deliveries_by_status"]["dead_letter"]
    assert {"name", "depth", "delayed", "dead", "workers"} <= set(health["queue"])


async def test_openapi_document_is_valid_and_lists_every_route(api):
    """/api/openapi.json is a valid OpenAPI 3 document covering every admin route."""
    doc = await (await api.get("/api/openapi.json")).json()

    validate(doc)
    routes = {r.resource.canonical for r in api.app.router.routes() if r.resource.canonical.startswith("/api/")}
    routes.discard("/api/openapi.json")
    assert routes == set(doc["paths"])
