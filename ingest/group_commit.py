"""Group commit: concurrent requests' deliveries go into one multi-row INSERT per transaction.

Each request still gets its answer only after its own row is committed
(:class:`workers.batching.Batcher`). A request's answer depends only on its
own row: if PostgreSQL refuses a batch's data (:class:`db.errors.RowRefused`),
the batch is split in halves and written again until the refused rows stand
alone; those get :class:`db.errors.RowRefused`, every other row is stored as
if it had come alone. ``k`` bad rows in a batch of ``n`` cost ``O(k log n)``
extra statements. Connection loss fails the whole batch (every waiter answers 503).
"""

from __future__ import annotations

import uuid

import asyncpg

from db import deliveries
from db.deliveries import NewDelivery
from db.errors import RowRefused
from workers.batching import Batcher


class GroupCommitWriter:
    """Writes :class:`NewDelivery` rows in batches.

    Args:
        max_batch: Rows per statement at most.
        max_in_flight: Batches being written at once (each holds one pool connection).
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256, max_in_flight: int = 4) -> None:
        self.pool = pool
        self._batcher: Batcher[NewDelivery, uuid.UUID | None] = Batcher(
            self._write_isolated, max_batch=max_batch, max_in_flight=max_in_flight
        )

    async def insert(self, row: NewDelivery) -> uuid.UUID | None:
        """Store one row; resolves once its batch is committed.

        Returns:
            The new id, or ``None`` if the key was already stored (a duplicate).

        Raises:
            RowRefused: PostgreSQL refused this row's data (its neighbours were stored).
            Whatever else the batch's INSERT raised (PostgreSQL unavailable: the caller answers 503).
        """
        return await self._batcher.submit(row)

    async def _write_isolated(self, rows: list[NewDelivery]) -> list[uuid.UUID | BaseException | None]:
        """Write ``rows``; on a data error, write their halves separately, down to single rows."""
        try:
            return list(await deliveries.insert_many(self.pool, rows))
        except RowRefused as refused:
            if len(rows) == 1:
                return [refused]
            middle = len(rows) // 2
            return [*await self._write_isolated(rows[:middle]), *await self._write_isolated(rows[middle:])]
