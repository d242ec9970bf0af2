"""The shared Redis client (gateway/store/redis_client.py) carries bursts beyond its pool: commands
wait for a connection instead of failing, so a burst of cold keys or limited requests is not taken
for a Redis outage (each caller falls back on any error)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError

from gateway.store import redis_client

pytestmark = pytest.mark.integration

BURST = 10 * redis_client.MAX_CONNECTIONS  # commands in flight at once


async def burst(client: aioredis.Redis) -> list[object]:
    await client.set("maas:test:burst", "1")
    return await asyncio.gather(*(client.get("maas:test:burst") for _ in range(BURST)), return_exceptions=True)


async def test_a_burst_beyond_the_pool_waits_for_connections_and_every_command_is_answered(redis_url):
    client = redis_client.connect(redis_url)
    try:
        answers = await burst(client)
        assert answers == [b"1"] * BURST
        assert client.connection_pool.max_connections == redis_client.MAX_CONNECTIONS  # bounded, not one per command
    finally:
        await client.aclose()


async def test_redis_pys_default_pool_would_fail_the_same_burst(redis_url):
    """Why the client is built this way: the default pool raises for the 101st command in flight."""
    client = aioredis.from_url(redis_url, socket_timeout=redis_client.TIMEOUT_SECONDS)
    try:
        answers = await burst(client)
        assert any(isinstance(a, MaxConnectionsError) for a in answers)
    finally:
        await client.aclose()
