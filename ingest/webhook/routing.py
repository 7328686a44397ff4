"""Tenant routing with a short-lived cache, so a request costs one round trip (the insert), not two."""

from __future__ import annotations

import time
import uuid

import asyncpg

from db import orgs

#: How long a routing answer is reused, in seconds: a new `agents add` /
#: `numbers add` mapping takes effect within this long.
ROUTE_TTL_S = 5.0
#: Entries kept at most; the cache is cleared when full (routing keys are few).
MAX_ENTRIES = 10_000


class Router:
    """Maps (assistant id, phone number id) to an org; see :func:`db.orgs.route` for the precedence."""

    def __init__(self, pool: asyncpg.Pool, default_org_id: uuid.UUID | None, *, ttl_s: float = ROUTE_TTL_S) -> None:
        self.pool = pool
        self.default_org_id = default_org_id
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str | None, str | None], tuple[float, orgs.Org | None]] = {}

    async def route(self, assistant_id: str | None, phone_number_id: str | None) -> orgs.Org | None:
        """The org for these ids, or None (quarantine).

        Raises:
            asyncpg and OS errors when PostgreSQL is unreachable and the answer is not cached.
        """
        key = (assistant_id, phone_number_id)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        org = await orgs.route(
            self.pool, assistant_id=assistant_id, phone_number_id=phone_number_id, default_org_id=self.default_org_id
        )
        if len(self._cache) >= MAX_ENTRIES:
            self._cache.clear()
        self._cache[key] = (now, org)
        return org
