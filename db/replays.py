"""Console replays (``replays``, ``replay_members``): a group's deliveries as they were at confirmation,
replayed under a lease with an owner, with exact counts.

Run :func:`create_for_group`, :func:`get` and :func:`list_replays` inside
:func:`db.tenancy.tenant_scope` for an org's session (row-level security), as
:func:`step` for a replay an org started; the lease functions use the service's
own connections.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.statuses import ReplayStatus
from db.types import Conn, DeliveryId, Executor

_COLUMNS = """r.id, r.org_id, r.requested_by, r.description, r.matched, r.refused, r.rate_per_s, r.replayed,
    r.completed, r.failed, r.superseded, r.status, r.created_at, r.finished_at"""


@dataclass(frozen=True, slots=True)
class Replay:
    """A confirmed replay and its progress (a row of ``replays``).

    Attributes:
        org_id: The clinic whose session confirmed it; None for an admin's.
        matched: Members at confirmation. ``refused``: synchronous tool calls left out (never replayed).
        replayed: Members sent to the workers so far; of those settled, ``completed``, ``failed``
            (dead-lettered or discarded again) and ``superseded`` (replayed since by another run).
        rate_per_s: The operator's cap, or None for as fast as the workers take them.
    """

    id: uuid.UUID
    org_id: uuid.UUID | None
    requested_by: str
    description: str
    matched: int
    refused: int
    rate_per_s: float | None
    replayed: int
    completed: int
    failed: int
    superseded: int
    status: ReplayStatus
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> Replay:
        """A replay from a row selected with ``_COLUMNS``."""
        return cls(**{**dict(row), "status": ReplayStatus(row["status"])})

    @property
    def settled(self) -> int:
        """Members sent whose outcome is recorded."""
        return self.completed + self.failed + self.superseded

    @property
    def in_flight(self) -> int:
        """Members sent whose outcome is not recorded yet."""
        return self.replayed - self.settled

    @property
    def changing(self) -> bool:
        """Whether a look later may show more: it is running, or the workers still hold members it sent
        (the console's page polls itself while this holds)."""
        return self.status == ReplayStatus.RUNNING or self.in_flight > 0


@dataclass(frozen=True)
class Step:
    """One batch of a replay's run.

    Attributes:
        replayed: The deliveries this batch put back to ``pending`` (to send after commit).
        cursor: The last member looked at (the next batch starts after it); None: no member was left.
    """

    replayed: list[DeliveryId]
    cursor: uuid.UUID | None


async def create_for_group(
    conn: Conn,
    *,
    org_id: uuid.UUID | None,
    requested_by: str,
    description: str,
    group: str,
    refused: int,
    rate_per_s: float | None,
) -> tuple[uuid.UUID, int]:
    """Record a confirmed replay of a dead-letter group's deliveries as they are now (its members, copied
    from the dead-letter index inside PostgreSQL, never through this process), in the caller's
    transaction; it starts ``running``. Synchronous tool calls are not members (never replayed).

    Returns:
        ``(replay id, members)``.
    """
    replay_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO replays (org_id, requested_by, description, matched, refused, rate_per_s)"
        " VALUES ($1, $2, $3, 0, $4, $5) RETURNING id",
        org_id,
        requested_by,
        description,
        refused,
        rate_per_s,
    )
    members: int = await conn.fetchval(
        """
        WITH m AS (
            INSERT INTO replay_members (replay_id, delivery_id, org_id)
            SELECT $1, k.id, k.org_id FROM organizations o CROSS JOIN LATERAL (
                SELECT k.id, k.org_id FROM webhook_delivery_log k
                 WHERE k.org_id = o.id AND k.status = 'dead_letter' AND k.error_group = $2 AND k.answer_by IS NULL
            ) AS k
            RETURNING 1
        )
        SELECT count(*) FROM m
        """,
        replay_id,
        group,
    )
    await conn.execute("UPDATE replays SET matched = $2 WHERE id = $1", replay_id, members)
    return replay_id, members


async def get(conn: Conn, replay_id: uuid.UUID) -> Replay | None:
    """One replay with its progress, after settling the members in flight (:func:`settle`); None if there is
    none this session can see."""
    await settle(conn, replay_id)
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM replays r WHERE r.id = $1", replay_id)
    return Replay.from_record(row) if row else None


async def settle(conn: Conn, replay_id: uuid.UUID) -> int:
    """Record the outcome of this replay's members that have one since the last look, and add them to the
    replay's counters, in one statement. Reads only the members in flight (run, not settled), so it costs
    what is in flight, not the replay's size. Members another look holds are skipped.

    Returns:
        How many members settled.
    """
    settled: int = await conn.fetchval(
        """
        WITH seen AS (
            SELECT m.ctid AS member,
                   CASE WHEN d.replay_count > m.replay_count THEN 'superseded'
                        WHEN d.status = 'completed' THEN 'completed' ELSE 'failed' END AS outcome
              FROM replay_members m JOIN webhook_delivery_log d ON d.id = m.delivery_id
             WHERE m.replay_id = $1 AND m.replay_count IS NOT NULL AND m.outcome IS NULL
               AND (d.replay_count > m.replay_count OR d.status IN ('completed', 'dead_letter', 'discarded'))
               FOR UPDATE OF m SKIP LOCKED
        ), marked AS (
            UPDATE replay_members m SET outcome = seen.outcome FROM seen WHERE m.ctid = seen.member
            RETURNING seen.outcome
        ), counted AS (
            UPDATE replays
               SET completed = completed + (SELECT count(*) FROM marked WHERE outcome = 'completed'),
                   failed = failed + (SELECT count(*) FROM marked WHERE outcome = 'failed'),
                   superseded = superseded + (SELECT count(*) FROM marked WHERE outcome = 'superseded')
             WHERE id = $1 AND EXISTS (SELECT 1 FROM marked)
        )
        SELECT count(*) FROM marked
        """,
        replay_id,
    )
    return settled


async def list_replays(conn: Conn, *, limit: int = 50) -> list[Replay]:
    """The newest replays, as last settled (their counts may lag what the workers did since)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM replays r ORDER BY r.created_at DESC LIMIT $1", limit)
    return [Replay.from_record(r) for r in rows]


async def cancel(conn: Conn, replay_id: uuid.UUID) -> bool:
    """Stop a running replay: its runner's next batch or renewal sees it and stops. False if not running."""
    status = await conn.execute(
        "UPDATE replays SET status = 'cancelled', finished_at = now() WHERE id = $1 AND status = 'running'",
        replay_id,
    )
    return status == "UPDATE 1"


@dataclass(frozen=True)
class ClaimedReplay:
    """A replay whose lease a runner holds (:func:`claim`).

    Attributes:
        id: The replay.
        org_id: The clinic that confirmed it (its runs act as that clinic), or None for the admin's.
        lease_owner: The runner's id, presented by every batch and renewal.
        rate_per_s: Deliveries per second at most, or None.
    """

    id: uuid.UUID
    org_id: uuid.UUID | None
    lease_owner: uuid.UUID
    rate_per_s: float | None


async def claim(conn: Executor, *, lease_s: float) -> ClaimedReplay | None:
    """Take the lease of the oldest running replay whose lease is free (new, or its runner died or
    stalled past it), under a new owner id that every batch and renewal of this runner must present.

    Returns:
        The claimed replay, or None when there is nothing to run.
    """
    row = await conn.fetchrow(
        """
        UPDATE replays SET lease_until = now() + make_interval(secs => $1), lease_owner = gen_random_uuid()
         WHERE id = (SELECT id FROM replays
                      WHERE status = 'running' AND (lease_until IS NULL OR lease_until < now())
                      ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id, org_id, lease_owner, rate_per_s
        """,
        lease_s,
    )
    return ClaimedReplay(row["id"], row["org_id"], row["lease_owner"], row["rate_per_s"]) if row else None


async def renew(conn: Executor, replay_id: uuid.UUID, owner: uuid.UUID, *, lease_s: float) -> bool:
    """Extend the lease while the runner waits; False if it is no longer this runner's (taken over after
    it ran out, or the replay was cancelled): the runner must stop."""
    status = await conn.execute(
        "UPDATE replays SET lease_until = now() + make_interval(secs => $3)"
        " WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        replay_id,
        owner,
        lease_s,
    )
    return status == "UPDATE 1"


async def step(
    conn: Conn,
    replay_id: uuid.UUID,
    owner: uuid.UUID,
    *,
    after: uuid.UUID | None,
    budget: int,
    limit: int,
    lease_s: float,
) -> Step | None:
    """One batch, in the caller's transaction: renew the lease, then of the next ``limit`` members not yet
    run (after ``after``, in id order) put those still ``failed``/``dead_letter`` back to ``pending`` (a
    fresh budget of ``budget`` attempts, as :func:`db.recovery.replay_batch`), mark them as this replay's
    with their replay number, and add them to ``replayed``: all or nothing, so the count is exact
    whatever stops the process. Rows another run holds are skipped (that run replays and counts them).

    Returns:
        The step, or None if the lease is no longer this runner's or the replay is not running.
    """
    if not await renew(conn, replay_id, owner, lease_s=lease_s):
        return None
    row = await conn.fetchrow(
        """
        WITH todo AS (
            SELECT m.delivery_id FROM replay_members m
             WHERE m.replay_id = $1 AND m.replay_count IS NULL AND ($2::uuid IS NULL OR m.delivery_id > $2)
             ORDER BY m.delivery_id LIMIT $4
        ), picked AS (
            SELECT d.id FROM todo JOIN webhook_delivery_log d ON d.id = todo.delivery_id
             WHERE d.status IN ('failed', 'dead_letter') AND d.answer_by IS NULL
               FOR UPDATE OF d SKIP LOCKED
        ), sent AS (
            UPDATE webhook_delivery_log d
               SET status = 'pending', max_attempts = d.attempts + $3, replay_count = d.replay_count + 1,
                   replayed_at = now(), next_attempt_at = NULL, lease_expires_at = NULL, enqueued_at = NULL
              FROM picked WHERE d.id = picked.id
            RETURNING d.id, d.replay_count
        ), marked AS (
            UPDATE replay_members m SET replay_count = sent.replay_count
              FROM sent WHERE m.replay_id = $1 AND m.replay_count IS NULL AND m.delivery_id = sent.id
            RETURNING m.delivery_id
        ), counted AS (
            UPDATE replays SET replayed = replayed + (SELECT count(*) FROM marked) WHERE id = $1
        )
        SELECT (SELECT delivery_id FROM todo ORDER BY delivery_id DESC LIMIT 1) AS cursor,
               array(SELECT delivery_id FROM marked) AS replayed
        """,
        replay_id,
        after,
        budget,
        limit,
    )
    assert row is not None
    return Step(list(row["replayed"]), row["cursor"])


async def finish(conn: Executor, replay_id: uuid.UUID, owner: uuid.UUID) -> None:
    """Mark a replay done and free its lease (a cancelled one stays cancelled)."""
    await conn.execute(
        "UPDATE replays SET status = 'done', finished_at = now(), lease_until = NULL"
        " WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        replay_id,
        owner,
    )
