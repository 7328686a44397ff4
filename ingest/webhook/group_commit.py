"""Group commit: concurrent requests' deliveries go into one multi-row INSERT per transaction.

Each request still gets its answer only after its own row is committed
(:class:`workers.batching.Batcher`). A request's answer depends only on its
own row: if PostgreSQL refuses a batch's data (:class:`db.errors.RowRefused`),
the batch is split in halves and written again until the refused rows stand
alone; those get :class:`db.errors.RowRefused`, every other row is stored as
if it had come alone. ``k`` bad rows in a batch of ``n`` cost ``O(k log n)``
extra statements. Connection loss fails the whole batch (every waiter answers 503).

A batch's new ``pending`` rows are one Dramatiq message per lane (:mod:`workers.admission`: a
clinic's rows beyond its live rate take the overflow lane): they share its id (``job_id``, with
``enqueued_at`` set optimistically) and, once committed, are handed to ``on_committed`` to be sent
after the answers.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

import asyncpg

from db import deliveries
from db.deliveries import NewDelivery
from db.errors import RowRefused
from db.statuses import DeliveryStatus
from db.types import DeliveryId
from workers.admission import Admission
from workers.batching import Batcher
from workers.broker import MAX_DELIVERIES_PER_MESSAGE, Lane

#: Called with a committed batch's new pending deliveries of one lane, their message id and the lane; must not block.
OnCommitted = Callable[[list[DeliveryId], str, Lane], None]


class GroupCommitWriter:
    """Writes :class:`NewDelivery` rows in batches.

    Args:
        on_committed: Sends a committed batch's new pending deliveries as one message per lane
            (``ingest.webhook.background.enqueue_in_background``).
        admission: Decides each new pending row's lane; all live without it.
        max_batch: Rows per statement at most (and so deliveries per message).
        max_in_flight: Batches being written at once (each holds one pool connection).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        on_committed: OnCommitted,
        *,
        admission: Admission | None = None,
        max_batch: int = MAX_DELIVERIES_PER_MESSAGE,
        max_in_flight: int = 4,
    ) -> None:
        self.pool = pool
        self._on_committed = on_committed
        self._admission = admission
        self._batcher: Batcher[NewDelivery, DeliveryId | None] = Batcher(
            self._write_batch, max_batch=max_batch, max_in_flight=max_in_flight
        )

    async def insert(self, row: NewDelivery) -> DeliveryId | None:
        """Store one row; resolves once its batch is committed.

        Returns:
            The new id, or ``None`` if the key was already stored (a duplicate).

        Raises:
            RowRefused: PostgreSQL refused this row's data (its neighbours were stored).
            Whatever else the batch's INSERT raised (PostgreSQL unavailable: the caller answers 503).
        """
        return await self._batcher.submit(row)

    async def _write_batch(self, rows: list[NewDelivery]) -> list[DeliveryId | BaseException | None]:
        lanes = [self._lane(r) if r.status == DeliveryStatus.PENDING else None for r in rows]
        message_ids = {lane: str(uuid.uuid4()) for lane in set(lanes) if lane is not None}
        rows = [
            r if lane is None else dataclasses.replace(r, job_id=message_ids[lane])
            for r, lane in zip(rows, lanes, strict=True)
        ]
        results = await self._write_isolated(rows)
        for lane, message_id in message_ids.items():
            queued = [
                result
                for row_lane, result in zip(lanes, results, strict=True)
                if row_lane is lane and isinstance(result, uuid.UUID)
            ]
            if queued:
                self._on_committed(queued, message_id, lane)
        return results

    def _lane(self, row: NewDelivery) -> Lane:
        return self._admission.lane(row.org_id) if self._admission else Lane.LIVE

    async def _write_isolated(self, rows: list[NewDelivery]) -> list[DeliveryId | BaseException | None]:
        """Write ``rows``; on a data error, write their halves separately, down to single rows."""
        try:
            return list(await deliveries.insert_many(self.pool, rows))
        except RowRefused as refused:
            if len(rows) == 1:
                return [refused]
            middle = len(rows) // 2
            return [*await self._write_isolated(rows[:middle]), *await self._write_isolated(rows[middle:])]
