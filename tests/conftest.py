"""Fixtures: a migrated template database per session, a fresh copy per test, real Redis.

PostgreSQL and Redis must answer on ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``
(defaults: 127.0.0.1). Locally a missing server skips the tests that need
it; in CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import dramatiq
import pytest
import redis

from db.migrate import migrate
from db.pool import create_pool
from ingest import auth
from ingest.configs import processing_config
from ingest.settings import Settings
from workers.actors import WorkerResources, declare_actors
from workers.broker import build_broker

ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CORPUS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "vapi" / "payloads"
SECRET = "test-secret-1"


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI and cannot be reached")
    pytest.skip(f"{what} is not reachable")


def dsn_for(database: str) -> str:
    """The admin DSN pointed at another database."""
    return urlunsplit(urlsplit(ADMIN_DSN)._replace(path="/" + database))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = f"vapi_tmpl_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(migrate(dsn_for(name)))
    except OSError:
        _unavailable(f"PostgreSQL at {ADMIN_DSN}")
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_dsn(template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = f"vapi_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield dsn_for(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def database_at(version: str) -> AsyncIterator[str]:
    """A fresh database migrated up to ``version`` only (for migration tests); yields its DSN, drops it after."""
    name = f"vapi_mig_{uuid.uuid4().hex[:12]}"
    try:
        await migrate(dsn_for(name), target=version)
        yield dsn_for(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A service pool on the test database."""
    p = await create_pool(db_dsn, min_size=1, max_size=20)
    yield p
    await p.close()


@pytest.fixture
async def org_id(pool: asyncpg.Pool) -> uuid.UUID:
    """An organization with an assistant mapped, used as VAPI_DEFAULT_ORG_ID too."""
    from db import orgs

    oid = await orgs.create_org(
        pool, name="Test clinic", timezone="Europe/London", region="GB", assistant_id="asst-test"
    )
    await orgs.add_agent(pool, oid, "asst-test")
    return oid


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A Redis key prefix of one test's own; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        _unavailable(f"Redis at {REDIS_URL}")
    namespace = f"vapi-test-{uuid.uuid4().hex[:10]}"
    yield namespace
    keys = list(client.scan_iter(f"{namespace}*"))
    if keys:
        client.delete(*keys)


def make_settings(db_dsn: str, **overrides: Any) -> Settings:
    """Test settings: HMAC with :data:`SECRET`, fast retries."""
    values: dict[str, Any] = {
        "database_url": db_dsn,
        "redis_url": REDIS_URL,
        "webhook_secrets": (SECRET.encode(),),
        "retry_max_attempts": 3,
        "retry_min_backoff_ms": 50,
        "retry_max_backoff_ms": 200,
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(db_dsn: str, org_id: uuid.UUID) -> Settings:
    """Settings for the test database, with the test org as the default tenant."""
    return make_settings(db_dsn, default_org_id=org_id)


@pytest.fixture
def broker(settings: Settings, redis_namespace: str) -> Iterator[dramatiq.Broker]:
    """A real Redis broker with a real in-process Dramatiq worker consuming it."""
    config = processing_config(settings)
    resources = WorkerResources(settings.database_url, config, pool_max_size=4)
    brk = build_broker(settings.redis_url, extra_middleware=[resources], namespace=redis_namespace)
    declare_actors(brk, resources)
    worker = dramatiq.Worker(brk, worker_threads=2, worker_timeout=100)
    worker.start()
    yield brk
    worker.stop()
    brk.close()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, broker: dramatiq.Broker) -> Any:
    """An HTTP client on the real app, enqueueing to the real broker."""
    from ingest.app import create_app

    return await aiohttp_client(create_app(settings, broker=broker))


def signed_headers(settings: Settings, body: bytes, **extra: str) -> dict[str, str]:
    """Headers Vapi would send for ``body`` under ``settings``."""
    return {"Content-Type": "application/json", **auth.sign(settings, body), **extra}


async def post(client: Any, settings: Settings, payload: dict[str, Any] | bytes, **headers: str) -> Any:
    """POST a signed body to /webhooks/vapi."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post("/webhooks/vapi", data=body, headers=signed_headers(settings, body, **headers))


async def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 15.0, interval_s: float = 0.05) -> Any:
    """Await ``predicate()`` (sync or async) until truthy; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


async def received(client: Any, type_label: str, outcome: str) -> float:
    """The counter's value now (metrics are process-wide, so tests compare before and after)."""
    text = await (await client.get("/metrics")).text()
    line = f'vapi_webhooks_received_total{{outcome="{outcome}",type="{type_label}"}} '
    for row in text.splitlines():
        if row.startswith(line):
            return float(row[len(line) :])
    return 0.0


def corpus_files() -> list[Path]:
    """The shared payload corpus; skips (with the reason) when ``../shared`` is absent."""
    if not CORPUS_DIR.is_dir():
        _unavailable(f"the payload corpus at {CORPUS_DIR} (../shared/vapi/payloads)")
    return sorted(CORPUS_DIR.glob("*.json"))


def status_update(call_id: str, status: str, **extra: Any) -> dict[str, Any]:
    """A minimal status-update body of our own."""
    return {
        "message": {
            "type": "status-update",
            "status": status,
            "timestamp": 1727030665008,
            "call": {"id": call_id, "type": "inboundPhoneCall"},
            **extra,
        }
    }


# Fixtures that run the real processes (tests/procs.py), available to every test module.
from tests.procs import env, fast_retries, org_for_env, private_postgres, services  # noqa: E402,F401
