"""Limits across instances on real Redis and Postgres: three gateways share one key's counters
(gateway/limits/limiter.py), a quota spent on one is refused on the others, Redis failing falls back to
per-instance counts, and tokens are charged from the usage the upstream reports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import time
from datetime import datetime, time as dt_time, timezone

import aiohttp
import asyncpg
import orjson
import pytest

from gateway.dev import services as devservices

from gateway.limits import limiter

from gateway.limits import quota_seeds
from gateway.config import LimitsConfig
from gateway.errors import QuotaExceededError
from gateway.limits.limiter import Limiter
from gateway.store import db
from gateway.store.keys import hash_key
from policies.records import Mode
from gateway.ops.metrics import LIMIT_REFUSALS
from policies.limits import NO_LIMITS, Kind, Limits, Scope, period, plan
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

HI = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, key: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    async with http.post(url + "/v1/chat/completions", json=body or HI, headers=bearer(key)) as r:
        return r.status, dict(r.headers), await r.read()


async def set_limits(pool, table: str, where: str, ident: str, **values) -> None:
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(values))
    await pool.execute(f"UPDATE {table} SET {assignments} WHERE {where} = $1", ident, *values.values())


@contextlib.asynccontextmanager
async def gateways(config, count: int = 3):
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running_gateway(config)) for _ in range(count)]


def rate_limited(detail: str) -> dict:
    return {"error": {"message": f"Too many requests. Please wait before retrying. ({detail})",
                      "type": "rate_limit_error", "param": None, "code": "RATE_LIMITED"}}


async def test_three_instances_admit_exactly_the_keys_limit_under_concurrent_load(pool, postgres_url, redis_url,
                                                                                  fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "api_keys", "id", seeded.key_id, rpm_limit=5)
    async with gateways(make_config(postgres_url, redis_url, fake_upstream.url)) as gws:
        answers = await asyncio.gather(*(post(http, gws[i % 3].url, seeded.key) for i in range(30)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(429) == 25
    for status, headers, body in answers:
        if status == 429:
            assert orjson.loads(body) == rate_limited("the requests per minute of this API key (5) is reached")
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("5", "0")
        else:
            assert headers["x-ratelimit-limit-requests"] == "5"
            assert int(headers["x-ratelimit-remaining-requests"]) in range(5)
            assert "x-ratelimit-limit-tokens" not in headers  # no token limit applies


async def test_a_quota_spent_on_one_instance_is_refused_on_the_others_at_once(pool, postgres_url, redis_url,
                                                                             fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "subscriptions", "user_id", seeded.user_id, quota_requests=2)
    async with gateways(make_config(postgres_url, redis_url, fake_upstream.url)) as gws:
        assert [(await post(http, gws[0].url, seeded.key))[0] for _ in range(2)] == [200, 200]
        for gw in gws:
            status, headers, body = await post(http, gw.url, seeded.key)
            error = orjson.loads(body)["error"]
            assert (status, error["code"], error["type"], headers["x-should-retry"]) == (
                429, "QUOTA_EXCEEDED", "rate_limit_error", "false")
            assert error["message"].startswith(
                "Your usage quota is used up. Contact your administrator to raise it, or wait for it to reset. "
                "(the request quota of your subscription to this model (2) is used up; it resets at ")
            assert "Retry-After" not in headers
            assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "0")


async def test_tokens_are_charged_from_the_usage_reported_plain_and_streamed(pool, postgres_url, redis_url,
                                                                            fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "subscriptions", "user_id", seeded.user_id, quota_tokens=1000)
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        status, headers, _ = await post(http, gw.url, seeded.key)  # usage 5 + 7
        assert (status, headers["x-ratelimit-remaining-tokens"]) == (200, "1000")  # charged after the answer
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        status, headers, body = await post(http, gw.url, seeded.key, {**HI, "stream": True})
        assert (status, headers["x-ratelimit-remaining-tokens"]) == (200, "988")
        # the usage chunk the gateway asked for is not in what the client gets
        assert b'"usage"' not in body and body.endswith(b"data: [DONE]\n\n")
        assert body.count(b"data: ") == fake_upstream.stream_chunks + 1
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        status, headers, body = await post(http, gw.url, seeded.key,
                                           {**HI, "stream": True, "stream_options": {"include_usage": True}})
        assert (status, headers["x-ratelimit-remaining-tokens"]) == (200, str(988 - 4 - fake_upstream.stream_chunks))
        assert body.count(b'"usage"') == 1  # asked by the client: kept
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        status, headers, _ = await post(http, gw.url, seeded.key)
        assert headers["x-ratelimit-remaining-tokens"] == str(988 - 2 * (4 + fake_upstream.stream_chunks))


async def test_parallel_requests_are_released_when_the_answer_ends(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "api_keys", "id", seeded.key_id, max_parallel_requests=1)
    fake_upstream.chunk_gap = 0.3
    slots = f"maas:lim:{{u:{seeded.user_id}}}:key:{seeded.key_id}:par"
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        slow = asyncio.create_task(post(http, gw.url, seeded.key, {**HI, "stream": True}))
        await eventually(lambda: gw.state.redis.zcard(slots), timeout=10)  # the stream holds the key's one slot
        status, headers, body = await post(http, gw.url, seeded.key)
        assert (status, orjson.loads(body)) == (
            429, rate_limited("the concurrent requests of this API key (1) is reached"))
        assert headers["Retry-After"] == "1"
        assert (await slow)[0] == 200
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        assert await gw.state.redis.zcard(slots) == 0  # released when the stream ended
        assert (await post(http, gw.url, seeded.key))[0] == 200



async def test_redis_stopped_mid_test_each_instance_counts_its_share_without_errors(pool, postgres_url, fake_upstream,
                                                                                     http, workdir, monkeypatch):
    monkeypatch.setattr(limiter, "REDIS_BACKOFF_SECONDS", 3600.0)  # stays in-process once Redis failed
    redis = devservices.start_redis(workdir / "redis")
    try:
        seeded = await seed_key(pool, models=["gpt-4o-mini"])
        await set_limits(pool, "api_keys", "id", seeded.key_id, rpm_limit=6)
        config = make_config(postgres_url, redis.url, fake_upstream.url, limits={"expected_instances": 3})
        async with gateways(config) as gws:
            assert (await post(http, gws[0].url, seeded.key))[0] == 200  # counted in Redis
            redis.kill()
            answers = await asyncio.gather(*(post(http, gws[i % 3].url, seeded.key) for i in range(30)))
            fallbacks = [gw for gw in gws if gw.state.limiter._redis_skip_until > 0]
        statuses = [status for status, _, _ in answers]
        assert set(statuses) == {200, 429}, statuses
        assert len(fallbacks) == 3
        assert statuses.count(200) == 3 * math.ceil(6 / 3)  # each instance: its share, 2
    finally:
        redis.stop()


def shadowed() -> float:
    return LIMIT_REFUSALS.labels("key", "rpm_limit", "shadow")._value.get()


async def test_shadow_counts_what_limits_would_refuse_and_off_skips_them(pool, postgres_url, redis_url, fake_upstream,
                                                                          http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "api_keys", "id", seeded.key_id, rpm_limit=1)
    before = shadowed()
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url,
                                           enforcement={"mode": "shadow"})) as gw:
        answers = [await post(http, gw.url, seeded.key) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert [headers["x-ratelimit-remaining-requests"] for _, headers, _ in answers] == ["0", "0", "0"]
    assert shadowed() - before == 2
    await set_limits(pool, "api_keys", "id", seeded.key_id, rpm_limit=0)
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url,
                                           enforcement={"mode": "off"})) as gw:
        status, headers, _ = await post(http, gw.url, seeded.key)
    assert status == 200 and not any(name.startswith("x-ratelimit") for name in headers)


def quota_exceeded(detail: str) -> dict:
    return {"error": {"message": "Your usage quota is used up. Contact your administrator to raise it, or wait for it "
                                 f"to reset. ({detail})", "type": "rate_limit_error", "param": None,
                      "code": "QUOTA_EXCEEDED"}}


async def reachable(redis) -> bool:
    try:
        return bool(await redis.ping())
    except Exception:  # the client's pooled connections fail until they reconnect
        return False


async def test_a_redis_restarted_empty_seeds_the_periods_quota_from_postgres(pool, postgres_url, fake_upstream, http,
                                                                            workdir):
    redis = devservices.start_redis(workdir / "redis")  # no persistence: a restart starts empty
    try:
        seeded = await seed_key(pool, models=["gpt-4o-mini"])
        await set_limits(pool, "subscriptions", "user_id", seeded.user_id, quota_requests=6, quota_tokens=1000)
        config = make_config(postgres_url, redis.url, fake_upstream.url, usage={"flush_seconds": 3600})
        async with running_gateway(config) as gw:
            for _ in range(3):  # 5 + 7 tokens each
                assert (await post(http, gw.url, seeded.key))[0] == 200
            await asyncio.wait_for(gw.state.limiter.settle(), 5)
            assert await gw.state.usage.flush() == 1
            assert (await post(http, gw.url, seeded.key))[0] == 200  # recorded, not flushed yet: the bound
            await asyncio.wait_for(gw.state.limiter.settle(), 5)
            redis = devservices.restart(redis)
            await eventually(lambda: reachable(gw.state.redis), timeout=10)
            assert await gw.state.redis.dbsize() == 0
            status, headers, _ = await post(http, gw.url, seeded.key)
            # seeded with the 3 flushed requests (36 tokens), not a fresh quota of 6
            assert (status, headers["x-ratelimit-remaining-requests"], headers["x-ratelimit-remaining-tokens"]) == (
                200, "2", "964")
            assert gw.state.limiter._redis_skip_until == 0  # counted in Redis, not in-process
            await asyncio.wait_for(gw.state.limiter.settle(), 5)
            assert [(await post(http, gw.url, seeded.key))[0] for _ in range(2)] == [200, 200]
            status, headers, body = await post(http, gw.url, seeded.key)
            when = datetime.fromtimestamp(period(time.time(), None)[1], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            assert (status, orjson.loads(body)) == (429, quota_exceeded(
                f"the request quota of your subscription to this model (6) is used up; it resets at {when}"))
            assert (headers["x-ratelimit-remaining-requests"], headers["x-ratelimit-remaining-tokens"]) == (
                "0", str(1000 - 36 - 3 * 12))
    finally:
        redis.stop()


async def test_a_counter_lost_while_a_stream_runs_is_not_recreated_by_its_tokens(pool, postgres_url, redis_url,
                                                                                 fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "subscriptions", "user_id", seeded.user_id, quota_tokens=1000)
    fake_upstream.chunk_gap = 0.3
    config = make_config(postgres_url, redis_url, fake_upstream.url, usage={"flush_seconds": 3600})
    async with running_gateway(config) as gw:
        assert (await post(http, gw.url, seeded.key))[0] == 200  # 5 + 7 tokens
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        assert await gw.state.usage.flush() == 1
        stream = asyncio.create_task(post(http, gw.url, seeded.key, {**HI, "stream": True}))
        await eventually(lambda: len(fake_upstream.seen) == 2, timeout=10)
        counters = [name async for name in gw.state.redis.scan_iter(match=f"maas:lim:{{u:{seeded.user_id}}}:*")]
        assert len(counters) == 1 and await gw.state.redis.delete(*counters) == 1  # as a restart or an eviction would
        assert (await stream)[0] == 200
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        assert [name async for name in gw.state.redis.scan_iter(match=f"maas:lim:{{u:{seeded.user_id}}}:*")] == []
        status, headers, _ = await post(http, gw.url, seeded.key)
    # seeded from Postgres: the flushed 12 tokens; the stream's, not flushed yet, are the bound's loss
    assert (status, headers["x-ratelimit-remaining-tokens"]) == (200, "988")


async def test_periods_that_began_after_midnight_today_are_seeded_without_a_query():
    """Budgets of an hour or a day roll over for every user at once: their seeds (no whole day yet) are
    0 without asking Postgres, so a rollover does not put one usage_daily query behind every user."""
    now = time.time()
    hourly = plan("k", "m1", Limits(max_budget=1.0, budget_duration="1h"), NO_LIMITS, NO_LIMITS, now)
    if datetime.fromtimestamp(hourly[0].starts, timezone.utc).time() == dt_time(0):
        hourly = plan("k", "m1", Limits(max_budget=1.0, budget_duration="1h"), NO_LIMITS, NO_LIMITS, now + 3600)
    assert await quota_seeds.seeds(None, "u", "k", "m1", list(hourly)) == [0.0]  # None: any query would fail


async def test_seeds_sum_the_recorded_usage_of_each_checks_period(pool):
    user = f"user-{os.urandom(6).hex()}"
    rows = [  # (day, model, requests, tokens, spend)
        ("2026-10-31", "m1", 100, 1000, 1.0),  # before both periods
        ("2026-11-01", "m1", 2, 20, 0.5),  # the first day of the calendar month
        ("2026-11-15", "m1", 3, 30, 0.25),  # the subscription's period starts 2026-11-14 08:00: from the 15th
        ("2026-11-20", "m2", 7, 70, 2.0),  # another model: the user's budget only
    ]
    await pool.executemany(
        "INSERT INTO usage_daily (day, key_id, user_id, model_id, requests, prompt_tokens, completion_tokens, spend) "
        "VALUES ($1::text::date, 'k', $2, $3, $4, $5, 0, $6)", [(d, user, m, r, t, s) for d, m, r, t, s in rows])
    now = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).timestamp()
    anchor = datetime(2026, 12, 14, 8, tzinfo=timezone.utc).timestamp()
    checks = plan("k", "m1", NO_LIMITS, Limits(max_budget=10.0), Limits(quota_requests=9, quota_tokens=90, max_budget=5.0),
                  now, anchor)
    assert [(c.scope, c.kind) for c in checks] == [(Scope.USER, Kind.BUDGET), (Scope.SUBSCRIPTION, Kind.QUOTA_REQUESTS),
                                                   (Scope.SUBSCRIPTION, Kind.QUOTA_TOKENS), (Scope.SUBSCRIPTION, Kind.BUDGET)]
    assert await quota_seeds.seeds(pool, user, "k", "m1", list(checks)) == [2.75, 3, 30, 0.25]
    assert await quota_seeds.seeds(pool, user, "k", "m1", [checks[2]]) == [30]
    keyed = plan("k", "m1", Limits(max_budget=1.0, budget_duration="7d"), NO_LIMITS, NO_LIMITS, now,
                 key_model=Limits(max_budget=1.0))
    assert [(c.scope, c.starts) for c in keyed] == [(Scope.KEY, datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp()),
                                                    (Scope.KEY_MODEL, datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp())]
    assert await quota_seeds.seeds(pool, user, "k", "m1", list(keyed)) == [0.0, 0.75]  # this week; m1 this month
    assert await quota_seeds.seeds(pool, user, "other", "m1", list(keyed)) == [0.0, 0.0]



async def test_seeds_wait_for_a_busy_pool_only_as_long_as_a_cold_key_lookup_does(postgres_url):
    """A flood of new users' first requests must not queue on the pool without bound: the seed query
    gives up after its acquire timeout (the limiter then counts in-process, logged)."""
    month = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).timestamp()  # a period begun before today: a query
    checks = plan("k", "m1", NO_LIMITS, Limits(max_budget=1.0), NO_LIMITS, month, None)
    small = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    try:
        async with small.acquire():  # the one connection is busy
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await quota_seeds.seeds(small, "u", "k", "m1", list(checks), acquire_timeout=0.2)
            assert time.monotonic() - started < 5  # bounded (0.2 s asked; a margin for a busy machine)
        assert await quota_seeds.seeds(small, "u", "k", "m1", list(checks), acquire_timeout=0.2) == [0.0]
    finally:
        await small.close()

class FlakyPool:
    """Fault injection: the first `failures` queries fail as a Postgres restart would fail them."""

    def __init__(self, pool, failures: int) -> None:
        self.pool, self.failures = pool, failures

    def acquire(self, *, timeout: float | None = None):
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("postgres restarting")
        return self.pool.acquire(timeout=timeout)


async def test_without_redis_a_seed_that_failed_is_taken_once_postgres_answers(pool):
    seeded = await seed_key(pool, models=["m-seed"])
    record = await db.load_key(pool, hash_key(seeded.key))
    today = datetime.now(timezone.utc).date()
    await pool.execute("INSERT INTO usage_daily (day, key_id, user_id, model_id, requests, prompt_tokens, "
                       "completion_tokens, spend) VALUES ($1, $2, $3, 'm-seed', 5, 0, 0, 0)",
                       today, record.key_id, record.user_id)
    limits = Limiter(LimitsConfig(), None, 60.0, pool=FlakyPool(pool, failures=1))
    record = dataclasses.replace(record, subscriptions={"m-seed": dataclasses.replace(
        record.subscriptions["m-seed"], limits=Limits(quota_requests=7))})
    now = time.time()
    checks = limits.checks(record, "m-seed", now)
    first = await limits.admit(record, "m-seed", checks, now, Mode.ENFORCE)  # the seed fails: counted from 0
    assert first.headers and dict(first.headers)[b"x-ratelimit-remaining-requests"] == b"6"
    second = await limits.admit(record, "m-seed", checks, now, Mode.ENFORCE)  # seeded now: max(1, 5 recorded) + 1
    assert dict(second.headers)[b"x-ratelimit-remaining-requests"] == b"1"
    third = await limits.admit(record, "m-seed", checks, now, Mode.ENFORCE)
    assert dict(third.headers)[b"x-ratelimit-remaining-requests"] == b"0"
    with pytest.raises(QuotaExceededError):
        await limits.admit(record, "m-seed", checks, now, Mode.ENFORCE)


async def test_without_redis_a_restarted_instance_keeps_the_periods_quota(pool, postgres_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await set_limits(pool, "subscriptions", "user_id", seeded.user_id, quota_requests=3)
    config = make_config(postgres_url, None, fake_upstream.url, usage={"flush_seconds": 3600})
    async with running_gateway(config) as gw:
        assert [(await post(http, gw.url, seeded.key))[0] for _ in range(2)] == [200, 200]
    # its last flush at shutdown holds both; a new process starts counting from them
    async with running_gateway(config) as gw:
        status, headers, _ = await post(http, gw.url, seeded.key)
        assert (status, headers["x-ratelimit-remaining-requests"]) == (200, "0")
        status, _, body = await post(http, gw.url, seeded.key)
    when = datetime.fromtimestamp(period(time.time(), None)[1], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    assert (status, orjson.loads(body)) == (429, quota_exceeded(
        f"the request quota of your subscription to this model (3) is used up; it resets at {when}"))
