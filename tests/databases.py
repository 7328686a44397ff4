"""Fresh copies of the migrated template database, made ahead of the tests that take them, and reused.

``CREATE DATABASE ... TEMPLATE`` takes about 280 ms here, a drop 100 ms and a ``TRUNCATE`` of the tables
140 ms (each ends in an fsync); every test that touches PostgreSQL needs a database as migrated. A thread
of its own keeps copies ready, so that work overlaps the tests instead of adding to them, and reuses a
copy a test gave back when deleting its rows makes it indistinguishable from a fresh one: same schema
(functions, triggers, policies, settings: :data:`FINGERPRINT`), never vacuumed or analyzed (so the planner
sees what it sees in a fresh copy), and small. Anything else is dropped and replaced by a new copy.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid

import asyncpg

from tests.helpers import ADMIN_DSN, dsn_for

#: Copies kept ready.
AHEAD = 2
#: A database that grew past this (bytes of its tables) is dropped, not emptied: its files stay large.
REUSE_MAX_BYTES = 2_000_000
#: What must be as migrated for a copy to be reused: tables, indexes, functions (and their code),
#: triggers, policies, the database's settings and the migrations recorded.
FINGERPRINT = """
SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
    SELECT 'c' || oid::regclass::text || relkind::text FROM pg_class WHERE relnamespace = 'public'::regnamespace
    UNION ALL SELECT 'p' || oid::regprocedure::text || md5(prosrc) FROM pg_proc
               WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT 't' || tgname || tgrelid::regclass::text || tgenabled::text FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'r' || polname || polrelid::regclass::text FROM pg_policy
    UNION ALL SELECT 's' || array_to_string(setconfig, ' ') FROM pg_db_role_setting
               WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL SELECT 'm' || version FROM schema_migrations
) AS s(x)
"""
#: Whether the copy was vacuumed or analyzed (planner statistics a fresh copy lacks), and its tables' size.
#: ``reltuples`` is -1 for every table of the migrated template and set by VACUUM, ANALYZE or CREATE INDEX,
#: in the catalog at once; the statistics counters may lag a backend that is still exiting.
HISTORY = """
SELECT coalesce(sum(vacuum_count + autovacuum_count + analyze_count + autoanalyze_count), 0) AS maintained,
       (SELECT count(*) FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND reltuples >= 0) AS analyzed,
       coalesce(sum(pg_table_size(relid)), 0) AS bytes
  FROM pg_stat_user_tables
"""


class DatabaseSupply:
    """Copies of ``template`` by name: :meth:`take` one (waits if none is ready), :meth:`give_back` it when
    done (emptied or dropped on the supply's thread), :meth:`close` at the end (drops them all)."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._used: queue.Queue[str] = queue.Queue()
        self._all: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(),), name="databases", daemon=True)
        self._thread.start()

    def take(self) -> str:
        """The name of a database as migrated, yours alone.

        Raises:
            Whatever made the supply fail to make one (PostgreSQL gone, say).
        """
        found = self._ready.get()
        if isinstance(found, BaseException):
            self._ready.put(found)  # every later test fails the same way, not by waiting forever
            raise found
        return found

    def give_back(self, name: str) -> None:
        """Done with this database: it is emptied for another test, or dropped (soon, on the supply's thread)."""
        self._used.put(name)

    def close(self) -> None:
        """Stop; drop every copy made."""
        self._stop.set()
        self._thread.join(timeout=60)

    async def _run(self) -> None:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            expected = await self._fingerprint(self._template)
            while not self._stop.is_set():
                if not self._used.empty():
                    name = self._used.get()
                    if await self._emptied(admin, name, expected):
                        self._ready.put(name)
                    else:
                        await self._drop(admin, name)
                elif self._ready.qsize() < AHEAD:
                    self._ready.put(await self._create(admin))
                else:
                    await asyncio.sleep(0.002)
            for name in list(self._all):
                await self._drop(admin, name)
        except Exception as exc:
            self._ready.put(exc)
        finally:
            await admin.close()

    async def _create(self, admin: asyncpg.Connection) -> str:
        name = f"vapi_test_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        self._all.add(name)
        return name

    async def _drop(self, admin: asyncpg.Connection, name: str) -> None:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._all.discard(name)

    async def _fingerprint(self, name: str) -> str:
        conn = await asyncpg.connect(dsn_for(name))
        try:
            found: str = await conn.fetchval(FINGERPRINT)
            return found
        finally:
            await conn.close()

    async def _emptied(self, admin: asyncpg.Connection, name: str, expected: str) -> bool:
        """Delete every row of a copy a test gave back, if that makes it as good as new; False if not."""
        # A connection the test left open (a process it started, a leaked pool) must not see the next test.
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        conn = await asyncpg.connect(dsn_for(name))
        try:
            history = await conn.fetchrow(HISTORY)
            assert history is not None  # an aggregate always returns one row
            if history["maintained"] or history["analyzed"] or history["bytes"] > REUSE_MAX_BYTES:
                return False
            if await conn.fetchval(FINGERPRINT) != expected:
                return False
            tables = await conn.fetch(
                "SELECT oid::regclass::text AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind IN ('r', 'p') AND relname <> 'schema_migrations'"
            )
            sequences = await conn.fetch(
                "SELECT oid::regclass::text AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind = 'S'"
            )
            async with conn.transaction():
                # Foreign keys are triggers: with them off the order of the deletes does not matter.
                await conn.execute("SET LOCAL session_replication_role = replica")
                for table in tables:
                    await conn.execute(f"DELETE FROM {table['name']}")
                for sequence in sequences:
                    await conn.execute(f"ALTER SEQUENCE {sequence['name']} RESTART")
            return True
        finally:
            await conn.close()
