"""Group commit: concurrent requests' deliveries go into one multi-row INSERT per transaction.

Each request still gets its answer only after its own row is committed. When
the service is idle a row is written at once (a batch of one); under load,
rows that arrive while earlier batches are being written wait for the next
free writer and share its statement and commit, so commits per second stop
being the ceiling.

A request's answer depends only on its own row: if PostgreSQL refuses a
batch's data (:func:`db.errors.is_data_error`), the batch is split in halves
and written again until the refused rows stand alone; those get
:class:`db.errors.RowRefused`, every other row is stored as if it had come
alone. ``k`` bad rows in a batch of ``n`` cost ``O(k log n)`` extra statements.
Connection loss fails the whole batch (every waiter answers 503).
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from db import deliveries
from db.deliveries import NewDelivery
from db.errors import RowRefused, is_data_error, refusal_reason

_Pending = tuple[NewDelivery, "asyncio.Future[uuid.UUID | None]"]


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
        self._queue: list[_Pending] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def insert(self, row: NewDelivery) -> uuid.UUID | None:
        """Store one row; resolves once its batch is committed.

        Returns:
            The new id, or ``None`` if the key was already stored (a duplicate).

        Raises:
            RowRefused: PostgreSQL refused this row's data (its neighbours were stored).
            Whatever else the batch's INSERT raised (PostgreSQL unavailable: the caller answers 503).
        """
        future: asyncio.Future[uuid.UUID | None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            task = asyncio.ensure_future(self._write())
            self._tasks.add(task)  # a reference, so the task cannot be collected mid-write
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _write(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                try:
                    await self._write_isolated(batch)
                except BaseException as exc:  # every waiter of this batch learns of the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._in_flight -= 1

    async def _write_isolated(self, batch: list[_Pending]) -> None:
        """Write ``batch``; on a data error, write its halves separately, down to single rows."""
        try:
            ids = await deliveries.insert_many(self.pool, [row for row, _ in batch])
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(batch) == 1:
                future = batch[0][1]
                if not future.done():
                    future.set_exception(RowRefused(refusal_reason(exc)))
                return
            middle = len(batch) // 2
            await self._write_isolated(batch[:middle])
            await self._write_isolated(batch[middle:])
            return
        for (_, future), new_id in zip(batch, ids, strict=True):
            if not future.done():
                future.set_result(new_id)
