"""Types shared across the db package's API: what a query runs on, and the ids that cross modules."""

from __future__ import annotations

import uuid
from typing import Any, NewType, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: One connection: a plain one, or one lent by a pool (asyncpg types them apart).
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
#: Anything a single statement can run on: a connection, or a pool (which lends one for the statement).
Executor: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"

#: ``webhook_delivery_log.id``.
DeliveryId = NewType("DeliveryId", uuid.UUID)
#: ``organizations.id``: the tenant.
OrgId = NewType("OrgId", uuid.UUID)
