"""The key store's tiers on real Postgres and Redis: what reaches Postgres, and when."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.config import CacheConfig
from gateway.errors import StoreUnavailableError
from gateway.store.keys import EARLIER_PREFIXES, REDIS_PREFIX, KeyStore, decode_record, hash_key, key_digest
from gateway.ops.metrics import KEY_CACHE_LOOKUPS, fold
import redis.asyncio as aioredis
from tests.support import seed_key

pytestmark = pytest.mark.integration


def count(tier: str, result: str) -> float:
    fold()  # the L1's own counts wait in metrics.TALLY until a scrape or a fold
    return KEY_CACHE_LOOKUPS.labels(tier=tier, result=result)._value.get()


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_unknown_keys_reach_postgres_once_each(pool, redis):
    store = KeyStore(pool, redis, CacheConfig())
    unknown = [key_digest(f"sk-random-{i}") for i in range(5)]
    before = count("postgres", "negative")
    for _ in range(40):
        for digest in unknown:
            assert await store.lookup(digest) is None
    assert count("postgres", "negative") - before == 5


async def test_a_second_instance_is_served_from_redis_not_postgres(pool, redis):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    first, second = KeyStore(pool, redis, CacheConfig()), KeyStore(pool, redis, CacheConfig())
    digest = key_digest(seeded.key)
    before_db, before_redis = count("postgres", "hit"), count("redis", "hit")
    record = await first.lookup(digest)
    assert record is not None and record.user_id == seeded.user_id
    await first.settle()  # its Redis write happens behind the answer
    assert await second.lookup(digest) == record
    assert (count("postgres", "hit") - before_db, count("redis", "hit") - before_redis) == (1, 1)
    assert second.cached(digest) == record  # now warm in L1: no await needed


@pytest.mark.parametrize("data", [b'{"key_id": "k", "some_future_field": 1}', b"[1, 2", b'{"subscriptions": [[]]}',
                                  b"1", b'"x"'])
async def test_a_record_redis_holds_in_another_shape_is_a_miss_not_an_error(pool, redis, data):
    """A rolling deploy: another version's record under our prefix (or a corrupt one) is read from Postgres."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    key_hash = hash_key(seeded.key)
    await redis.set(REDIS_PREFIX + key_hash, data)
    before = count("redis", "unreadable"), count("postgres", "hit")
    record = await KeyStore(pool, redis, CacheConfig()).lookup(key_digest(seeded.key))
    assert record is not None and record.user_id == seeded.user_id
    assert (count("redis", "unreadable") - before[0], count("postgres", "hit") - before[1]) == (1, 1)


async def test_an_invalidation_deletes_the_earlier_versions_records_too(pool, redis):
    """A key revoked while this version runs must not come back to life in a rollback: the record an
    earlier version wrote under its own prefix (active, as it was) goes with this version's."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    key_hash = hash_key(seeded.key)
    for prefix in EARLIER_PREFIXES:
        await redis.set(prefix + key_hash, b'{"key_id": "as an earlier version wrote it"}', px=300_000)
    store = KeyStore(pool, redis, CacheConfig())
    assert await store.lookup(key_digest(seeded.key)) is not None
    await store.settle()
    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", seeded.key_id)
    await store.invalidate({"kind": "key", "id": seeded.key_id, "key_hash": key_hash})
    assert await redis.exists(REDIS_PREFIX + key_hash, *(prefix + key_hash for prefix in EARLIER_PREFIXES)) == 0


async def test_concurrent_misses_share_one_query(pool):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    store = KeyStore(pool, None, CacheConfig())
    before = count("postgres", "hit")
    records = await asyncio.gather(*(store.lookup(key_digest(seeded.key)) for _ in range(20)))
    assert len({r.key_id for r in records}) == 1
    assert count("postgres", "hit") - before == 1


async def test_l1_is_bounded(pool):
    store = KeyStore(pool, None, CacheConfig(max_entries=3))
    seeded = [await seed_key(pool, models=["gpt-4o-mini"]) for _ in range(5)]
    for s in seeded:
        await store.lookup(key_digest(s.key))
    assert store.size == 3
    assert store.cached(key_digest(seeded[0].key)) is False  # the oldest went first
    assert store.cached(key_digest(seeded[-1].key)) is not False


class HeldWrites:
    """Fault injection: the real Redis client, with every SET held until `release` is set."""

    def __init__(self, client) -> None:
        self.client = client
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def get(self, name):
        return await self.client.get(name)

    async def set(self, name, value, **options):
        self.started.set()
        await self.release.wait()
        return await self.client.set(name, value, **options)


async def test_the_answer_does_not_wait_for_the_redis_write(pool, redis):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    key_hash = hash_key(seeded.key)
    held = HeldWrites(redis)
    store = KeyStore(pool, held, CacheConfig())
    record = await asyncio.wait_for(store.lookup(key_digest(seeded.key)), timeout=10)  # answered while its write is held
    assert record is not None and record.key_id == seeded.key_id
    await asyncio.wait_for(held.started.wait(), timeout=10)  # the write runs behind, held
    assert await redis.get(REDIS_PREFIX + key_hash) is None
    held.release.set()
    await store.settle()
    assert decode_record(await redis.get(REDIS_PREFIX + key_hash)) == record


async def test_an_invalidation_before_the_redis_write_cancels_it(pool, redis):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    key_hash = hash_key(seeded.key)
    store = KeyStore(pool, redis, CacheConfig())
    assert await store.lookup(key_digest(seeded.key)) is not None  # the write is queued, not started
    store.forget(key_hash=key_hash)  # e.g. the key was revoked meanwhile
    await store.settle()
    assert await redis.get(REDIS_PREFIX + key_hash) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_with_postgres_gone_a_cached_record_is_served_for_max_stale_seconds_then_503(pool, postgres_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    digest, clock = key_digest(seeded.key), Clock()
    own = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    store = KeyStore(own, None, CacheConfig(ttl_seconds=30, max_stale_seconds=300), clock=clock)
    record = await store.lookup(digest)
    assert record is not None and record.key_id == seeded.key_id
    await own.close()  # from now on every query fails: the database cannot answer

    clock.now += 31  # past the L1 TTL: Postgres is asked, fails, the last record is served
    assert store.cached(digest) is False
    assert await store.lookup(digest) == record
    clock.now += 300 - 31  # exactly max_stale_seconds after the load: still served
    assert await store.lookup(digest) == record
    clock.now += 0.5  # older than that: refused
    with pytest.raises(StoreUnavailableError) as refused:
        await store.lookup(digest)
    assert (refused.value.status, refused.value.code) == (503, "KEY_STORE_UNAVAILABLE")


async def test_a_reload_from_postgres_restarts_the_staleness_bound(pool, postgres_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    digest, clock = key_digest(seeded.key), Clock()
    own = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    store = KeyStore(own, None, CacheConfig(ttl_seconds=30, max_stale_seconds=60), clock=clock)
    await store.lookup(digest)
    clock.now += 50
    await store.lookup(digest)  # past the TTL, Postgres answers: loaded again at 1050
    await own.close()
    store.forget_all()  # as when the invalidation listener is lost: kept for stale-if-error
    clock.now += 55  # 105 s after the first load, 55 s after the second
    assert (await store.lookup(digest)).key_id == seeded.key_id
    clock.now += 10
    with pytest.raises(StoreUnavailableError):
        await store.lookup(digest)


async def test_after_forget_all_a_record_is_reloaded_once_then_fresh_for_its_ttl(pool):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    digest, clock = key_digest(seeded.key), Clock()
    store = KeyStore(pool, None, CacheConfig(ttl_seconds=30), clock=clock)
    await store.lookup(digest)
    assert store.cached(digest) is not False
    store.forget_all()
    assert store.cached(digest) is False  # kept for stale-if-error only
    clock.now += 1
    before = count("postgres", "hit")
    assert (await store.lookup(digest)).key_id == seeded.key_id
    assert count("postgres", "hit") - before == 1
    clock.now += 29.5  # 29.5 s after the reload: still fresh, no query
    assert store.cached(digest) is not False
    clock.now += 0.5  # 30 s after it: expired
    assert store.cached(digest) is False


async def test_a_key_deleted_while_nobody_said_so_is_not_served_stale_later(pool, postgres_url):
    """A reload that finds no key (deleted, its event missed) drops the cached record: with Postgres
    gone afterwards, stale-if-error must not bring the deleted key back."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    digest, clock = key_digest(seeded.key), Clock()
    own = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    store = KeyStore(own, None, CacheConfig(ttl_seconds=30, negative_ttl_seconds=5, max_stale_seconds=300), clock=clock)
    assert await store.lookup(digest) is not None
    await pool.execute("DELETE FROM api_keys WHERE id = $1", seeded.key_id)  # no invalidation reaches the store
    clock.now += 31
    assert await store.lookup(digest) is None
    await own.close()
    clock.now += 6  # past the negative entry: Postgres is asked, fails
    with pytest.raises(StoreUnavailableError):
        await store.lookup(digest)


@pytest.mark.parametrize("spelled", [str.upper, lambda h: f" {h} "])
async def test_an_event_spelling_the_hash_otherwise_still_deletes_the_redis_record(pool, redis, spelled):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    key_hash = hash_key(seeded.key)
    store = KeyStore(pool, redis, CacheConfig())
    assert await store.lookup(key_digest(seeded.key)) is not None
    await store.settle()
    assert await redis.exists(REDIS_PREFIX + key_hash) == 1
    await store.invalidate({"kind": "key", "key_hash": spelled(key_hash)})
    assert store.cached(key_digest(seeded.key)) is False
    assert await redis.exists(REDIS_PREFIX + key_hash) == 0


async def test_an_event_with_a_hash_that_is_no_string_still_drops_by_key_id(pool):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    store = KeyStore(pool, None, CacheConfig())
    assert await store.lookup(key_digest(seeded.key)) is not None
    assert store.forget(key_hash=12345, key_id=seeded.key_id) == [hash_key(seeded.key)]  # type: ignore[arg-type]
    assert store.cached(key_digest(seeded.key)) is False
