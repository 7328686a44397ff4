"""The Dramatiq Redis broker, the delivery message, and enqueueing from asyncio.

A message carries the ids of up to :data:`MAX_DELIVERIES_PER_MESSAGE`
deliveries, never their payloads: PostgreSQL holds the payload and is the
record of every outcome, dead letters included.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _scripts
from dramatiq.middleware import AgeLimit, AsyncIO, Middleware, Retries, ShutdownNotifications, TimeLimit

from db.types import DeliveryId

#: The queue and actor that process live deliveries.
QUEUE_NAME = "deliveries"
ACTOR_NAME = "process_delivery"
#: Replays go through their own queue and actor, so live deliveries are taken first: each
#: queue has its own consumer and prefetch, and a worker's threads take prefetched
#: messages lowest priority number first (Dramatiq's PriorityQueue of actor priorities).
REPLAY_QUEUE_NAME = "replays"
REPLAY_ACTOR_NAME = "replay_delivery"
#: A clinic's new deliveries beyond its live rate (:mod:`workers.admission`) take this queue and actor.
OVERFLOW_QUEUE_NAME = "overflow"
OVERFLOW_ACTOR_NAME = "process_overflow"


class Lane(enum.Enum):
    """Which queue a delivery's message takes, and so how soon a worker takes it.

    ``LIVE``: new deliveries of a clinic within its rate. ``OVERFLOW``: a clinic's new deliveries
    beyond its rate (a flood), after live ones. ``REPLAY``: replayed dead letters, after both.
    Overflow and replay are the bulk lanes: each worker process runs a bounded number of their
    messages at once (:class:`DeliveryBroker`), so its other threads stay free for live ones.
    """

    LIVE = "live"
    OVERFLOW = "overflow"
    REPLAY = "replay"

    @property
    def queue_name(self) -> str:
        """The Dramatiq queue."""
        return _QUEUES[self]

    @property
    def actor_name(self) -> str:
        """The Dramatiq actor."""
        return _ACTORS[self]

    @property
    def priority(self) -> int:
        """Dramatiq priority of the lane's actor: lower runs first."""
        return _PRIORITIES[self]

    @property
    def per_message(self) -> int:
        """Deliveries one message of this lane carries at most (see the constants below)."""
        return REPLAY_DELIVERIES_PER_MESSAGE if self is Lane.REPLAY else MAX_DELIVERIES_PER_MESSAGE


_QUEUES = {Lane.LIVE: QUEUE_NAME, Lane.OVERFLOW: OVERFLOW_QUEUE_NAME, Lane.REPLAY: REPLAY_QUEUE_NAME}
_ACTORS = {Lane.LIVE: ACTOR_NAME, Lane.OVERFLOW: OVERFLOW_ACTOR_NAME, Lane.REPLAY: REPLAY_ACTOR_NAME}
_PRIORITIES = {Lane.LIVE: 0, Lane.OVERFLOW: 50, Lane.REPLAY: 100}
#: Every queue a worker consumes.
QUEUES = tuple(lane.queue_name for lane in Lane)
#: Seconds to wait on Redis before an enqueue counts as failed (the sweeper resends).
REDIS_SOCKET_TIMEOUT_S = 2.0


class DeliveryBroker(RedisBroker):
    """Dramatiq's Redis broker, with a smaller prefetch for the bulk lanes' queues.

    Dramatiq gives every queue's consumer the same prefetch, and a worker thread that takes a
    message holds it until it is processed. With a bulk lane's queue full, every thread of a
    process could be holding bulk messages, and a live message, though first in the worker's
    priority queue, would wait for one of them to finish. Capping what a bulk queue's consumer
    holds caps the threads bulk messages can occupy: the rest stay free for live messages.

    Args:
        bulk_prefetch: Messages a process holds at most per queue name (fetched, not yet acked);
            queues not named keep the worker's prefetch.
    """

    def __init__(self, *args: Any, bulk_prefetch: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.bulk_prefetch = dict(bulk_prefetch or {})

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        """Dramatiq's consumer for ``queue_name``, its prefetch capped for a bulk lane's queue."""
        cap = self.bulk_prefetch.get(queue_name)
        return super().consume(queue_name, min(prefetch, cap) if cap else prefetch, timeout)


def build_broker(
    redis_url: str,
    *,
    extra_middleware: Iterable[Middleware] = (),
    namespace: str = "dramatiq",
    bulk_prefetch: Mapping[Lane, int] | None = None,
) -> DeliveryBroker:
    """A Redis broker with the middleware our actors need (AsyncIO for async actors).

    Dramatiq's own Prometheus middleware is left out on purpose: we export
    our own metrics, and it reads its settings from the environment at import.

    Args:
        namespace: Prefix of the Redis keys (tests isolate themselves with it).
        bulk_prefetch: Messages of each bulk lane a worker process holds at most (:class:`DeliveryBroker`).
    """
    client = redis.Redis.from_url(
        redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S
    )
    middleware: list[Middleware] = [AgeLimit(), TimeLimit(), ShutdownNotifications(), Retries(), AsyncIO()]
    middleware.extend(extra_middleware)
    caps = {lane.queue_name: n for lane, n in (bulk_prefetch or {}).items()}
    return DeliveryBroker(client=client, middleware=middleware, namespace=namespace, bulk_prefetch=caps)


def redis_problem(exc: BaseException) -> tuple[bool, str] | None:
    """Why talking to Redis failed, as ``(the REDIS_URL is wrong, one-line reason)``; None if not that.

    ``True``: Redis refused the URL's credentials or database; ``False``: it
    could not be reached. redis-py's messages name host and port, never the password.
    """
    if isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS", "ERR DB index"))
    ):
        return True, f"Redis refused it: {exc}"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return False, f"cannot reach Redis: {exc}"
    return None


def ping(redis_url: str) -> None:
    """Ask Redis for PONG once (start-up checks).

    Raises:
        redis.RedisError: as classified by :func:`redis_problem`.
    """
    client = redis.Redis.from_url(
        redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


#: Deliveries one message carries at most. A message is one claim, one transaction and one
#: completing statement on the worker; larger batches add little once per-message costs are
#: shared, and a smaller one lets a replay's messages interleave with live ones.
MAX_DELIVERIES_PER_MESSAGE = 100
#: Deliveries a replay message carries at most. Live messages no longer wait for a replay message
#: to finish (a worker keeps threads for them: :class:`DeliveryBroker`), so this trades only the
#: replay's per-message cost against how much of the lane one message holds: 10,000 dead letters
#: took 5.8 s with 10 and 3.1 s with 50 (live queue wait during the replay 1.00x and 1.16x idle).
REPLAY_DELIVERIES_PER_MESSAGE = 50


def delivery_message(
    delivery_ids: Sequence[DeliveryId], message_id: str | None = None, *, lane: Lane = Lane.LIVE
) -> dramatiq.Message[Any]:
    """The message that asks a worker to process ``delivery_ids`` together (a list of id strings as its one argument).

    Args:
        message_id: The id already written to the rows' ``job_id``; new if omitted.
        lane: The queue it goes on.
    """
    return dramatiq.Message(
        queue_name=lane.queue_name,
        actor_name=lane.actor_name,
        args=([str(i) for i in delivery_ids],),
        kwargs={},
        options={},
        message_id=message_id or str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )


def batches(
    delivery_ids: Sequence[DeliveryId], *, alone: Collection[DeliveryId] = (), size: int = MAX_DELIVERIES_PER_MESSAGE
) -> list[tuple[list[DeliveryId], str]]:
    """Split deliveries into messages of at most ``size`` deliveries, each with a new message id.

    Args:
        alone: Deliveries that get a message of their own (reclaimed after a
            worker died mid-batch: one that kills its process must not spend its
            neighbours' attempts again).

    Returns:
        ``(delivery_ids, message_id)`` per message, in the order given.
    """
    together = [i for i in delivery_ids if i not in alone]
    single = [i for i in delivery_ids if i in alone]
    chunks = [together[k : k + size] for k in range(0, len(together), size)]
    chunks += [[i] for i in single]
    return [(chunk, str(uuid.uuid4())) for chunk in chunks]


async def enqueue_many(
    broker: dramatiq.Broker,
    messages: Sequence[tuple[Sequence[DeliveryId], str | None]],
    *,
    delay_ms: int | None = None,
    lane: Lane = Lane.LIVE,
) -> None:
    """Send one message per ``(delivery_ids, message_id)``, in order, in one worker thread.

    The broker's client is redis-py's blocking one, hence the thread: the
    event loop never waits on Redis. (The web process's hot path uses
    :class:`workers.enqueuer.AsyncEnqueuer` instead.)

    Args:
        delay_ms: Deliver no sooner than this many milliseconds from now (retries).
        lane: The queue they go on.

    Raises:
        redis.RedisError: at the first failure; earlier messages were sent.
            Callers record the rest as not enqueued, or leave them to the sweeper.
    """
    built = [delivery_message(ids, message_id, lane=lane) for ids, message_id in messages]

    def send_all() -> None:
        for message in built:
            broker.enqueue(message, delay=delay_ms)

    await asyncio.to_thread(send_all)


async def replay_backlog(broker: dramatiq.Broker) -> int:
    """Replay messages waiting in Redis (not yet taken by a worker); 0 for a broker without Redis."""
    client = getattr(broker, "client", None)
    if client is None:
        return 0
    key = f"{broker.namespace}:{REPLAY_QUEUE_NAME}"  # type: ignore[attr-defined]
    waiting: int = await asyncio.to_thread(client.llen, key)
    return waiting


def dispatch_script() -> bytes:
    """The Lua source of Dramatiq's Redis ``dispatch`` script (private to dramatiq; read here only).

    :class:`workers.enqueuer.AsyncEnqueuer` runs it with ``redis.asyncio`` to
    enqueue exactly as ``RedisBroker.enqueue`` does, without a thread.
    """
    script: bytes = _scripts["dispatch"]
    return script


def dispatch_enqueue_args(
    broker: RedisBroker, message: dramatiq.Message[Any], *, now_ms: int, max_unpack: int
) -> list[Any]:
    """The ``dispatch`` script's arguments for enqueueing ``message`` now, as ``RedisBroker.enqueue`` builds them.

    Like ``RedisBroker.enqueue``, the message gets a fresh ``redis_message_id`` option. Its key is
    ``broker.namespace``; ``max_unpack`` is :func:`lua_max_unpack_size`.
    """
    redis_id = str(uuid.uuid4())
    message = message.copy(options={"redis_message_id": redis_id})
    return [
        "enqueue",
        now_ms,
        message.queue_name,
        broker.broker_id,
        broker.heartbeat_timeout,
        broker.dead_message_ttl,
        0,
        max_unpack,
        redis_id.encode(),
        message.encode(),
    ]


def lua_max_unpack_size(broker: RedisBroker) -> int:
    """Redis's Lua ``unpack`` limit as Dramatiq measures it (a blocking Redis call; cached by dramatiq)."""
    size: int = broker._max_unpack_size()  # type: ignore[no-untyped-call]
    return size


async def queue_stats(broker: dramatiq.Broker) -> dict[str, Any] | None:
    """The delivery queue as Dramatiq's Redis broker keeps it: depth, delayed, dead, and worker heartbeats.

    Dramatiq's key layout (``<ns>:<queue>``, ``.DQ``, ``.XQ``, ``__heartbeats__``)
    is known here only. Redis trouble is reported in the result, not raised.

    Returns:
        ``{name, depth, delayed, dead, overflow_depth, replay_depth, workers: [{id, last_seen_s_ago}]}``,
        ``{name, error}``,
        or ``None`` for a broker without Redis (tests' stub broker).
    """
    client = getattr(broker, "client", None)
    if client is None:
        return None
    namespace = broker.namespace  # type: ignore[attr-defined]
    queue = f"{namespace}:{QUEUE_NAME}"

    def read() -> dict[str, Any]:
        pipe = client.pipeline()
        pipe.llen(queue)
        pipe.llen(f"{queue}.DQ")
        pipe.zcard(f"{queue}.XQ")
        pipe.llen(f"{namespace}:{OVERFLOW_QUEUE_NAME}")
        pipe.llen(f"{namespace}:{REPLAY_QUEUE_NAME}")
        pipe.zrange(f"{namespace}:__heartbeats__", 0, -1, withscores=True)
        depth, delayed, dead, overflow_depth, replay_depth, beats = pipe.execute()
        now_ms = time.time() * 1000
        workers = [{"id": w.decode(), "last_seen_s_ago": round((now_ms - score) / 1000, 1)} for w, score in beats]
        return {
            "name": QUEUE_NAME,
            "depth": depth,
            "delayed": delayed,
            "dead": dead,
            "overflow_depth": overflow_depth,
            "replay_depth": replay_depth,
            "workers": workers,
        }

    try:
        return await asyncio.to_thread(read)
    except Exception as exc:  # noqa: BLE001 - report Redis trouble, do not fail the endpoint
        return {"name": QUEUE_NAME, "error": f"redis unavailable: {type(exc).__name__}"}
