"""Group commit: concurrent requests' deliveries go into one multi-row INSERT per transaction.

Each request still gets its answer only after its own row is committed. When
the service is idle a row is written at once (a batch of one); under load,
rows that arrive while earlier batches are being written wait for the next
free writer and share its statement and commit, so commits per second stop
being the ceiling.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from db import deliveries
from db.deliveries import NewDelivery


class GroupCommitWriter:
    """Writes :class:`NewDelivery` rows in batches.

    Args:
        max_batch: Rows per statement at most.
        max_in_flight: Batches being written at once (each holds one pool connection).
    """

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 256, max_in_flight: int = 4) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._queue: list[tuple[NewDelivery, asyncio.Future[uuid.UUID | None]]] = []
        self._in_flight = 0

    async def insert(self, row: NewDelivery) -> uuid.UUID | None:
        """Store one row; resolves once its batch is committed.

        Returns:
            The new id, or ``None`` if the key was already stored (a duplicate).

        Raises:
            Whatever the batch's INSERT raised (PostgreSQL unavailable: the caller answers 503).
        """
        future: asyncio.Future[uuid.UUID | None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            asyncio.ensure_future(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                try:
                    ids = await deliveries.insert_many(self.pool, [row for row, _ in batch])
                except BaseException as exc:  # every waiter of this batch learns of the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for (_, future), new_id in zip(batch, ids):
                        if not future.done():
                            future.set_result(new_id)
        finally:
            self._in_flight -= 1
