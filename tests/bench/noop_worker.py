"""Baseline for the drain benchmark: Dramatiq itself, an async actor that does nothing.

Same broker set-up, queue, processes and threads as ``vapi-ingest worker``,
so the difference to the real drain is what processing a delivery costs.
"""

from __future__ import annotations

import os

import dramatiq

from workers.broker import ACTOR_NAME, QUEUE_NAME, build_broker

NAMESPACE = "noop"


def setup_broker() -> None:
    """``dramatiq tests.bench.noop_worker:setup_broker``."""
    broker = build_broker(os.environ["REDIS_URL"], namespace=NAMESPACE)
    dramatiq.set_broker(broker)

    async def process_delivery(delivery_id: str) -> None:
        return None

    dramatiq.actor(broker=broker, actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, max_retries=0)(process_delivery)
