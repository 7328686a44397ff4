"""Fairness between clinics: a flooding clinic's excess takes the overflow lane, workers keep threads for live.

The numbers (a quiet clinic's queue wait idle and during a flood or a replay) are in ``make bench``
(``tests.bench.fairness``); these tests hold the mechanism: the lane each delivery takes, that
nothing is dropped or charged an attempt, and that a bulk lane cannot take every worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any

import dramatiq
import pytest
import redis
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from db import orgs
from db.types import DeliveryId, OrgId
from ingest.configs import processing_config
from tests.helpers import NOTHING_LEFT_TO_RUN, REDIS_URL, metric, post, status_update, wait_until
from workers import admission as admission_mod
from workers.actors import WorkerResources, build_worker_broker, declare_actors
from workers.admission import Admission
from workers.broker import Lane, build_broker
from workers.sending import send_and_record

ORGS = [OrgId(uuid.UUID(int=i)) for i in range(1, 5)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reference(rate: float, burst: int, events: list[tuple[int, float]]) -> list[Lane]:
    """The token bucket written the plain way: every clinic remembered forever."""
    tokens = {o: float(burst) for o in range(len(ORGS))}
    last: dict[int, float | None] = {o: None for o in range(len(ORGS))}
    now, out = 1000.0, []
    for org, step in events:
        now += step
        seen = last[org]
        if seen is not None:
            tokens[org] = min(burst, tokens[org] + (now - seen) * rate)
        last[org] = now
        if tokens[org] >= 1:
            tokens[org] -= 1
            out.append(Lane.LIVE)
        else:
            out.append(Lane.OVERFLOW)
    return out


EVENTS = st.lists(
    st.tuples(st.integers(0, len(ORGS) - 1), st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.1, 1.0, 30.0])), max_size=300
)


@hsettings(max_examples=200, deadline=None)
@given(events=EVENTS, rate=st.sampled_from([0.5, 5.0, 100.0]), burst=st.integers(1, 20), prune_at=st.integers(1, 3))
def test_admission_is_a_token_bucket_per_clinic_even_when_it_forgets_idle_clinics(events, rate, burst, prune_at):
    """Any interleaving of clinics and pauses: lanes are exactly a per-clinic token bucket's, with pruning forced often."""
    clock = Clock()
    original = admission_mod.PRUNE_AT
    admission_mod.PRUNE_AT = prune_at
    try:
        adm = Admission(rate, burst, clock=clock)
        got = []
        for org, step in events:
            clock.now += step
            got.append(adm.lane(ORGS[org]))
    finally:
        admission_mod.PRUNE_AT = original
    assert got == _reference(rate, burst, events)


@hsettings(max_examples=100, deadline=None)
@given(quiet=EVENTS.map(lambda ev: [(0, step) for _, step in ev]), flood=st.integers(0, 2000))
def test_one_clinics_flood_never_changes_another_clinics_lanes(quiet, flood):
    """A quiet clinic's lanes are the same whether or not another sends ``flood`` deliveries between each of its own."""
    clock = Clock()
    alone, beside = Admission(20.0, 10, clock=clock), Admission(20.0, 10, clock=clock)
    for _, step in quiet:
        clock.now += step
        for _ in range(flood % 50):
            beside.lane(ORGS[1])
        assert alone.lane(ORGS[0]) == beside.lane(ORGS[0])


def test_a_rate_of_zero_sends_everything_live_and_bad_knobs_are_refused():
    adm = Admission(0, 1)
    assert {adm.lane(ORGS[0]) for _ in range(10_000)} == {Lane.LIVE}
    with pytest.raises(ValueError, match="burst"):
        Admission(10, 0)


def test_a_bulk_lanes_consumer_holds_at_most_its_cap(redis_namespace):
    """With 10 overflow messages waiting, a consumer asked for a prefetch of 64 fetches 2 (its cap) and no
    more until one is acked; the live queue keeps the prefetch asked for."""
    brk = build_broker(REDIS_URL, namespace=redis_namespace, bulk_prefetch={Lane.OVERFLOW: 2})
    try:
        for _ in range(10):
            brk.enqueue(dramatiq.Message(queue_name="overflow", actor_name="x", args=([],), kwargs={}, options={}))
        consumer = brk.consume("overflow", prefetch=64, timeout=100)
        taken = [m for m in (next(consumer) for _ in range(6)) if m is not None]
        assert len(taken) == 2
        consumer.ack(taken[0])
        assert next(consumer) is not None  # the slot it freed is refilled
        assert next(consumer) is None
        assert brk.consume("deliveries", prefetch=64, timeout=100).prefetch == 64
    finally:
        brk.close()


@pytest.fixture
async def quiet_org(pool):
    oid = await orgs.create_org(pool, name="Quiet clinic", assistant_id="asst-quiet")
    await orgs.add_agent(pool, oid, "asst-quiet")
    return oid


def _from(assistant_id: str, call_id: str) -> dict[str, Any]:
    body = status_update(call_id, "in-progress")
    body["message"]["call"]["assistantId"] = assistant_id
    return body


async def test_a_flooding_clinics_excess_goes_on_the_overflow_lane_and_all_of_it_is_processed_once(
    aiohttp_client, settings, pool, org_id, quiet_org, redis_namespace
):
    """Over HTTP, 40 status updates from one clinic (burst 5, no refill to speak of) and 4 from another, workers
    stopped: Redis holds exactly the first 5 of the flood and all 4 quiet ones on the live queue, the other 35 on
    the overflow queue, and the metric counts 35. Then a real worker processes all 44, each in one attempt."""
    from ingest.app import create_app

    settings = dataclasses.replace(settings, org_live_rate_per_s=0.001, org_live_burst=5)
    brk = build_broker(settings.redis_url, namespace=redis_namespace)
    client = await aiohttp_client(create_app(settings, broker=brk))
    before = metric(await (await client.get("/metrics")).text(), "vapi_deliveries_overflowed_total")
    for i in range(40):
        assert (await post(client, settings, _from("asst-test", f"flood-{i}"))).status == 200
        if i % 10 == 0:
            assert (await post(client, settings, _from("asst-quiet", f"quiet-{i}"))).status == 200

    def queued(queue: str) -> list[str]:
        r = redis.Redis.from_url(settings.redis_url)
        try:
            ids = r.hvals(f"{redis_namespace}:{queue}.msgs")
            return [d for raw in ids for d in json.loads(raw)["args"][0]]
        finally:
            r.close()

    async def ids_of(org: uuid.UUID) -> set[str]:
        rows = await pool.fetch("SELECT id FROM webhook_delivery_log WHERE org_id = $1", org)
        return {str(r["id"]) for r in rows}

    await wait_until(lambda: len(queued("deliveries")) + len(queued("overflow")) == 44)
    flood, quiet = await ids_of(org_id), await ids_of(quiet_org)
    live, overflow = set(queued("deliveries")), set(queued("overflow"))
    assert quiet <= live and len(live & flood) == 5 and overflow <= flood and len(overflow) == 35
    after = metric(await (await client.get("/metrics")).text(), "vapi_deliveries_overflowed_total")
    assert after - before == 35

    resources = WorkerResources(settings.database_url, processing_config(settings), pool_max_size=4)
    declare_actors(brk, resources)
    worker = dramatiq.Worker(brk, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        await wait_until(lambda: pool.fetchval(NOTHING_LEFT_TO_RUN), timeout_s=30)
    finally:
        worker.stop()
        brk.close()
    rows = await pool.fetch("SELECT status, attempts FROM webhook_delivery_log")
    assert len(rows) == 44 and {(r["status"], r["attempts"]) for r in rows} == {("completed", 1)}


@pytest.mark.slow  # waits for a full bulk lane's messages in real time
async def test_live_deliveries_are_taken_while_a_bulk_lane_is_full_and_it_never_holds_more_than_its_cap(
    settings, pool, org_id, redis_namespace
):
    """A real worker (4 threads, overflow concurrency 1) with 20,000 overflow deliveries waiting: the overflow
    messages it holds unacked never exceed 2 (what it runs plus the next), and a live delivery sent after
    them is completed while most of the overflow is still waiting."""
    brk = build_worker_broker(
        settings.redis_url,
        settings.database_url,
        processing_config(settings),
        pool_max_size=6,
        bulk_concurrency={Lane.OVERFLOW: 1, Lane.REPLAY: 1},
        namespace=redis_namespace,
    )
    bulk = await _pending(pool, org_id, "bulk", 20_000)
    live = await _pending(pool, org_id, "live", 1)
    await send_and_record(pool, brk, bulk, lane=Lane.OVERFLOW)
    r = redis.Redis.from_url(settings.redis_url)
    held: list[int] = []
    worker = dramatiq.Worker(brk, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        await asyncio.sleep(0.1)  # the worker is taking overflow messages
        await send_and_record(pool, brk, live, lane=Lane.LIVE)

        async def live_done() -> bool:
            held.append(sum(r.scard(k) for k in r.scan_iter(f"{redis_namespace}:__acks__.*.overflow")))
            return await pool.fetchval("SELECT status = 'completed' FROM webhook_delivery_log WHERE id = $1", live[0])

        await wait_until(live_done, timeout_s=30, interval_s=0.01)
        waiting = await pool.fetchval(
            "SELECT count(*) FROM webhook_delivery_log WHERE status <> 'completed' AND id = ANY($1)", bulk
        )
        assert waiting > 10_000, f"only {waiting} of 20,000 overflow deliveries were still waiting"
        await wait_until(lambda: pool.fetchval(NOTHING_LEFT_TO_RUN), timeout_s=120, interval_s=0.05)
        for _ in range(5):
            held.append(sum(r.scard(k) for k in r.scan_iter(f"{redis_namespace}:__acks__.*.overflow")))
    finally:
        worker.stop()
        brk.close()
        r.close()
    assert 1 <= max(held) <= 2, held


async def _pending(pool, org_id: uuid.UUID, tag: str, n: int) -> list[DeliveryId]:
    rows = await pool.fetch(
        "INSERT INTO webhook_delivery_log (org_id, event_type, event_id, payload, status)"
        " SELECT $1, 'status-update', $2 || g, jsonb_set($3::jsonb, '{call,id}', to_jsonb($2 || g)), 'pending'"
        "   FROM generate_series(1, $4) g RETURNING id",
        org_id,
        f"status-update:{tag}-",
        status_update("c", "in-progress")["message"],
        n,
    )
    return [r["id"] for r in rows]
