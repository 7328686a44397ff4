"""Fixtures: a migrated template database per session, a fresh copy per test, real Redis.

PostgreSQL and Redis must answer on ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``
(defaults: 127.0.0.1). Locally a missing server skips the tests that need
it; in CI (``CI`` set) it fails them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import dramatiq
import pytest
import redis

from db.migrate import migrate
from db.pool import create_pool
from ingest.configs import bulk_concurrency, processing_config
from ingest.settings import Settings
from tests.databases import DatabaseSupply
from tests.helpers import ADMIN_DSN, REDIS_URL, admin_sql, dsn_for, make_settings, unavailable
from workers.actors import build_worker_broker
from workers.broker import build_broker

# Fixtures that run the real processes, available to every test module.
pytest_plugins = ["tests.procs", "tests.fuzzing"]

#: Fixtures that start real processes (the CLI, web, worker, a private PostgreSQL or Redis): a test that
#: takes one is marked ``slow``, so ``pytest -m "not slow"`` is the quick loop.
PROCESS_FIXTURES = frozenset({"env", "services", "org_for_env", "private_postgres", "web_process"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts processes ``slow`` (by the fixtures it takes, so none is forgotten)."""
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = f"vapi_tmpl_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(migrate(dsn_for(name)))
    except OSError:
        unavailable(f"PostgreSQL at {ADMIN_DSN}")
    yield name
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def databases(template_db: str) -> Iterator[DatabaseSupply]:
    """Copies of the template made ahead of the tests that take them, and dropped after, on a thread."""
    supply = DatabaseSupply(template_db)
    yield supply
    supply.close()


@pytest.fixture
async def db_dsn(databases: DatabaseSupply) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    name = await asyncio.to_thread(databases.take)
    yield dsn_for(name)
    databases.give_back(name)


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
        unavailable(f"Redis at {REDIS_URL}")
    namespace = f"vapi-test-{uuid.uuid4().hex[:10]}"
    yield namespace
    keys = list(client.scan_iter(f"{namespace}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def settings(db_dsn: str, org_id: uuid.UUID) -> Settings:
    """Settings for the test database, with the test org as the default tenant."""
    return make_settings(db_dsn, default_org_id=org_id)


@pytest.fixture
def broker(settings: Settings, redis_namespace: str) -> Iterator[dramatiq.Broker]:
    """A real Redis broker with a real in-process Dramatiq worker consuming it."""
    # The bulk lanes bounded as `vapi-ingest worker` bounds them (ingest.worker_main).
    brk = build_worker_broker(
        settings.redis_url,
        settings.database_url,
        processing_config(settings),
        pool_max_size=4,
        bulk_concurrency=bulk_concurrency(settings),
        namespace=redis_namespace,
    )
    worker = dramatiq.Worker(brk, worker_threads=2, worker_timeout=100)
    worker.start()
    yield brk
    worker.stop()
    brk.close()


@pytest.fixture
def app_broker(request: pytest.FixtureRequest, settings: Settings, redis_namespace: str) -> Iterator[dramatiq.Broker]:
    """The broker an app under test sends to: the in-process worker's when the test takes ``broker`` (its
    deliveries are processed), else a real Redis broker nobody consumes, so a test that does not need its
    deliveries processed starts no worker."""
    if "broker" in request.fixturenames:
        yield request.getfixturevalue("broker")
        return
    brk = build_broker(settings.redis_url, namespace=redis_namespace)
    yield brk
    brk.close()


@pytest.fixture
async def ingest_client(aiohttp_client: Any, settings: Settings, redis_namespace: str) -> Any:
    """An HTTP client on the real app with a real Redis broker and no worker: for tests of the receiver alone."""
    from ingest.app import create_app

    brk = build_broker(settings.redis_url, namespace=redis_namespace)
    yield await aiohttp_client(create_app(settings, broker=brk))
    brk.close()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, broker: dramatiq.Broker) -> Any:
    """An HTTP client on the real app, enqueueing to the real broker."""
    from ingest.app import create_app

    return await aiohttp_client(create_app(settings, broker=broker))
