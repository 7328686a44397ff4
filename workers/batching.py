"""One batching primitive: concurrent callers' items go out together, each caller awaits its own result.

Used by the receiver's group commit (rows into one INSERT) and the async
enqueuer (messages into one Redis pipeline). Items that arrive while
``max_in_flight`` batches are being written wait for the next free writer
and share its batch, so per-batch costs (a commit, a round trip) stop being
the ceiling under load, while an idle service writes a batch of one at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Writes one batch; returns one result per item, in order: a value, or the exception that item alone gets.
Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    """Collects items from concurrent callers and writes them in batches.

    Args:
        flush: Writes a batch. If it raises, every item of the batch gets that exception.
        max_batch: Items per batch at most.
        max_in_flight: Batches being written at once.
    """

    def __init__(self, flush: Flush[T, R], *, max_batch: int, max_in_flight: int) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        # References to running writers: a task nobody references may be garbage-collected mid-write.
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Queue ``item``; resolves with its result once its batch is written.

        Raises:
            Whatever ``flush`` raised for the batch, or returned for this item.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._in_flight < self.max_in_flight:
            self._in_flight += 1
            task = asyncio.ensure_future(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                try:
                    results = await self._flush([item for item, _ in batch])
                except BaseException as exc:  # every waiter of this batch learns of the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._in_flight -= 1
