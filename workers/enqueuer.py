"""Enqueue delivery messages from asyncio without threads, many per Redis round trip.

redis-py's blocking client (what ``RedisBroker.enqueue`` uses) would stall
the event loop, and a thread per enqueue costs more CPU than the request it
serves. This sends the same thing Dramatiq's ``RedisBroker.enqueue`` sends
(its own ``dispatch.lua`` script, command ``enqueue``, the broker's
namespace, id and timeouts) with ``redis.asyncio``, and pipelines every
message requested in one event-loop turn into one round trip. The broker's
enqueue middleware hooks are not run; the web process's broker has none that
act on enqueue.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import redis
import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker, _scripts

from workers.broker import REDIS_SOCKET_TIMEOUT_S, delivery_message


class AsyncEnqueuer:
    """Sends delivery messages to a :class:`RedisBroker`'s queue from asyncio.

    Args:
        broker: The broker whose Redis server, queue, namespace and settings to follow.
        max_batch: Messages per pipeline at most.
    """

    def __init__(self, broker: RedisBroker, *, max_batch: int = 500) -> None:
        self.broker = broker
        pool = broker.client.connection_pool
        kw = pool.connection_kwargs
        self.client = aioredis.Redis(
            host=kw.get("host", "localhost"),
            port=kw.get("port", 6379),
            db=kw.get("db", 0),
            username=kw.get("username"),
            password=kw.get("password"),
            ssl=pool.connection_class is redis.SSLConnection,
            socket_timeout=REDIS_SOCKET_TIMEOUT_S,
            socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        )
        self.script = self.client.register_script(_scripts["dispatch"])
        self.max_batch = max_batch
        self._pending: list[tuple[bytes, bytes, str, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        # Dramatiq's Lua unpack limit, cached by the broker class; asked once, off the loop.
        self._max_unpack: int | None = None

    async def enqueue(self, delivery_id: uuid.UUID, message_id: str) -> None:
        """Send one message; resolves when Redis has it.

        Raises:
            redis.RedisError: if Redis is unreachable (the caller records the
                delivery as not enqueued, and the sweeper sends it later).
        """
        message = delivery_message(delivery_id, message_id).copy(options={"redis_message_id": str(uuid.uuid4())})
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(
            (message.options["redis_message_id"].encode(), message.encode(), message.queue_name, future)
        )
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))
        await future

    async def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                if self._max_unpack is None:
                    self._max_unpack = await asyncio.to_thread(self.broker._max_unpack_size)
                pipe = self.client.pipeline(transaction=False)
                now_ms = int(time.time() * 1000)
                for redis_id, data, queue_name, _ in batch:
                    args = [
                        "enqueue",
                        now_ms,
                        queue_name,
                        self.broker.broker_id,
                        self.broker.heartbeat_timeout,
                        self.broker.dead_message_ttl,
                        0,
                        self._max_unpack,
                        redis_id,
                        data,
                    ]
                    await self.script(keys=[self.broker.namespace], args=args, client=pipe)
                await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - every waiter learns of the failure
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for *_, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
