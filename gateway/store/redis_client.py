"""The Redis client every part of a serving process shares (key cache, invalidations, limiter, guards).

    connect(url)   a client whose pool *waits* for a free connection (at most TIMEOUT_SECONDS)

redis-py's default asyncio pool holds at most 100 connections and raises MaxConnectionsError for
the 101st command in flight; every caller here reads an error as "Redis is down" and falls back
(Postgres for keys, in-process counters for limits), so a burst of cold keys would have looked like
an outage. A blocking pool queues those commands instead. The same bound applies to a command, a
connect and the wait for a connection: Redis answers in well under a millisecond, so half a second
means it is gone, and the callers' fallbacks take over.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio import BlockingConnectionPool

TIMEOUT_SECONDS = 0.5
MAX_CONNECTIONS = 100  # redis-py's default; Redis's own limit is 10,000 clients


def connect(url: str) -> aioredis.Redis:
    pool = BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT_SECONDS,
                                           socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool
