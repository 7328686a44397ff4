"""Enqueue delivery messages from asyncio without threads, many per Redis round trip.

redis-py's blocking client (what ``RedisBroker.enqueue`` uses) would stall
the event loop, and a thread per enqueue costs more CPU than the request it
serves. This sends what ``RedisBroker.enqueue`` sends (Dramatiq's dispatch
script with the broker's namespace, id and timeouts; :mod:`workers.broker`)
with ``redis.asyncio``, and pipelines the messages of concurrent requests
into one round trip (:class:`workers.batching.Batcher`). The broker's
enqueue middleware hooks are not run; the web process's broker has none
that act on enqueue.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker

from db.types import DeliveryId
from workers.batching import Batcher
from workers.broker import (
    REDIS_SOCKET_TIMEOUT_S,
    Lane,
    delivery_message,
    dispatch_enqueue_args,
    dispatch_script,
    lua_max_unpack_size,
)


class AsyncEnqueuer:
    """Sends delivery messages to a :class:`RedisBroker`'s queue from asyncio.

    Args:
        broker: The broker whose queue, namespace and settings to follow.
        redis_url: The broker's Redis (``REDIS_URL``; TLS and unix sockets as ``redis.asyncio`` reads them).
        max_batch: Messages per pipeline at most.
    """

    def __init__(self, broker: RedisBroker, redis_url: str, *, max_batch: int = 500) -> None:
        self.broker = broker
        self.client = aioredis.Redis.from_url(
            redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S
        )
        self.script = self.client.register_script(dispatch_script())
        # One pipeline in flight: everything queued meanwhile rides the next one. Four in flight made
        # pipelines 4x smaller and cost the web process ~8 % of its requests/s at saturation (A/B, 2 processes).
        self._batcher: Batcher[tuple[list[DeliveryId], str, Lane], None] = Batcher(
            self._send, max_batch=max_batch, max_in_flight=1
        )
        # Dramatiq's Lua unpack limit, cached by the broker class; asked once, off the loop.
        self._max_unpack: int | None = None

    async def enqueue(self, delivery_ids: list[DeliveryId], message_id: str, lane: Lane = Lane.LIVE) -> None:
        """Send one message for ``delivery_ids`` on ``lane``; resolves when Redis has it.

        Raises:
            redis.RedisError: if Redis is unreachable (the caller records the
                delivery as not enqueued, and the sweeper sends it later).
        """
        await self._batcher.submit((delivery_ids, message_id, lane))

    async def _send(self, pairs: list[tuple[list[DeliveryId], str, Lane]]) -> list[BaseException | None]:
        if self._max_unpack is None:
            self._max_unpack = await asyncio.to_thread(lua_max_unpack_size, self.broker)
        pipe = self.client.pipeline(transaction=False)
        now_ms = int(time.time() * 1000)
        for delivery_ids, message_id, lane in pairs:
            message = delivery_message(delivery_ids, message_id, lane=lane)
            args = dispatch_enqueue_args(self.broker, message, now_ms=now_ms, max_unpack=self._max_unpack)
            await self.script(keys=[self.broker.namespace], args=args, client=pipe)
        await pipe.execute()
        return [None] * len(pairs)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
