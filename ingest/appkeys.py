"""Typed keys for what the aiohttp application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

import asyncio

import asyncpg
import dramatiq
from aiohttp import web

from ingest.settings import Settings
from ingest.webhook.group_commit import GroupCommitWriter
from ingest.webhook.routing import Router
from workers.enqueuer import AsyncEnqueuer
from workers.processing import ProcessingConfig

SETTINGS = web.AppKey("settings", Settings)
DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
BROKER = web.AppKey("broker", dramatiq.Broker)
PROCESSING = web.AppKey("processing", ProcessingConfig)
ROUTER = web.AppKey("router", Router)
ENQUEUER = web.AppKey("enqueuer", AsyncEnqueuer)
WRITER = web.AppKey("writer", GroupCommitWriter)
#: Background enqueues still running; awaited on shutdown so none is cut off.
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
STARTED_AT = web.AppKey("started_at", float)
#: Set to make the console's replay runner look for work now.
REPLAY_WAKE = web.AppKey("replay_wake", asyncio.Event)
