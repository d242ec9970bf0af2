"""Changes reaching other instances: SQL written straight to Postgres (as LiteMaaS or an
operator would) reaches a second gateway within 1 s, and the Redis channel alone
(no Postgres listener) carries an admin flow's invalidation."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from gateway.config import CacheConfig
from gateway.store.invalidation import Invalidator
from gateway.store.keys import REDIS_CHANNEL, REDIS_PREFIX, KeyStore, hash_key, key_digest
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

CONTRACT_SECONDS = 1.0  # design: a change is honoured on every instance within a second


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def answer(http: aiohttp.ClientSession, url: str, key: str) -> tuple[int, dict | None]:
    async with http.post(url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(key)) as r:
        body = await r.json()
        return r.status, body.get("error")


SUSPENDED = (403, {"message": "Your subscription to this model is not active. Please check your subscription. "
                              "(model: gpt-4o-mini)",
                   "type": "permission_denied_error", "param": "model", "code": "SUBSCRIPTION_INACTIVE"})
DEACTIVATED = (403, {"message": "Your account is deactivated. Contact your administrator.",
                     "type": "permission_denied_error", "param": None, "code": "USER_INACTIVE"})


@contextlib.asynccontextmanager
async def two_instances(postgres_url, redis_url, upstream_url):
    config = make_config(postgres_url, redis_url, upstream_url)  # L1 TTL 30 s: only invalidation can explain a change
    async with running_gateway(config) as first, running_gateway(config) as second, aiohttp.ClientSession() as http:
        for gw in (first, second):
            await asyncio.wait_for(gw.state.invalidator.postgres_listening.wait(), 10)
        yield first, second, http


async def reaches_both(http, urls: list[str], key: str, expected) -> float:
    async def all_agree() -> bool:
        return all([await answer(http, url, key) == expected for url in urls])

    return await eventually(all_agree, timeout=CONTRACT_SECONDS)


async def test_a_subscription_changed_by_sql_reaches_a_second_instance_within_1s(
    pool, postgres_url, redis_url, fake_upstream
):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with two_instances(postgres_url, redis_url, fake_upstream.url) as (first, second, http):
        urls = [first.url, second.url]
        await reaches_both(http, urls, seeded.key, (200, None))  # both hold the record now
        await pool.execute("UPDATE subscriptions SET status = 'suspended' WHERE user_id = $1", seeded.user_id)
        await reaches_both(http, urls, seeded.key, SUSPENDED)
        await pool.execute("UPDATE subscriptions SET status = 'active' WHERE user_id = $1", seeded.user_id)
        await reaches_both(http, urls, seeded.key, (200, None))


async def test_a_user_changed_by_sql_reaches_a_second_instance_within_1s(pool, postgres_url, redis_url, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with two_instances(postgres_url, redis_url, fake_upstream.url) as (first, second, http):
        urls = [first.url, second.url]
        await reaches_both(http, urls, seeded.key, (200, None))
        await pool.execute("UPDATE users SET is_active = FALSE WHERE id = $1", seeded.user_id)
        await reaches_both(http, urls, seeded.key, DEACTIVATED)
        await pool.execute("UPDATE users SET is_active = TRUE WHERE id = $1", seeded.user_id)
        await reaches_both(http, urls, seeded.key, (200, None))


@contextlib.asynccontextmanager
async def redis_only_instance(pool, redis_url):
    """A KeyStore and an Invalidator that hear Redis only: no Postgres listener."""
    client = aioredis.from_url(redis_url)
    store = KeyStore(pool, client, CacheConfig())
    invalidator = Invalidator(store, None, client)
    invalidator.start()
    try:
        await asyncio.wait_for(invalidator.redis_listening.wait(), 10)
        yield store, invalidator, client
    finally:
        await invalidator.stop()
        await store.settle()
        await client.aclose()


async def test_the_redis_channel_alone_carries_key_and_user_invalidations(pool, redis_url):
    one, other = await seed_key(pool, models=["gpt-4o-mini"]), await seed_key(pool, models=["gpt-4o-mini"])
    hashes = [hash_key(one.key), hash_key(other.key)]
    async with redis_only_instance(pool, redis_url) as (publisher, sender, _), \
            redis_only_instance(pool, redis_url) as (listener, _, client):
        for key_hash in hashes:
            assert (await listener.lookup(bytes.fromhex(key_hash))).key_id in (one.key_id, other.key_id)
            assert await publisher.lookup(bytes.fromhex(key_hash)) is not None
        await publisher.settle()
        await listener.settle()
        assert await client.exists(*(REDIS_PREFIX + h for h in hashes)) == 2

        await sender.publish({"kind": "key", "id": one.key_id, "key_hash": hashes[0]})
        assert publisher.cached(bytes.fromhex(hashes[0])) is False  # applied here at once
        await eventually(lambda: listener.cached(bytes.fromhex(hashes[0])) is False, timeout=CONTRACT_SECONDS)
        assert listener.cached(bytes.fromhex(hashes[1])) is not False  # only what the event names
        assert await client.exists(REDIS_PREFIX + hashes[0]) == 0  # and its Redis entry

        await sender.publish({"kind": "user", "id": other.user_id})
        await eventually(lambda: listener.cached(bytes.fromhex(hashes[1])) is False, timeout=CONTRACT_SECONDS)
        assert await client.exists(REDIS_PREFIX + hashes[1]) == 0


async def test_messages_that_are_not_events_do_not_stop_the_redis_listener(pool, redis_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    digest = key_digest(seeded.key)
    async with redis_only_instance(pool, redis_url) as (store, _, client):
        assert await store.lookup(digest) is not None
        for payload in (b"{not json", b"[1, 2]", b"\xff", orjson.dumps({"kind": "nonsense", "id": seeded.key_id})):
            await client.publish(REDIS_CHANNEL, payload)
        assert store.cached(digest) is not False
        await client.publish(REDIS_CHANNEL, orjson.dumps({"kind": "key", "id": seeded.key_id}))  # as another instance would
        await eventually(lambda: store.cached(digest) is False, timeout=CONTRACT_SECONDS)
