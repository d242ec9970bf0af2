"""Limits across instances on real Redis and Postgres: three gateways share one key's counters
(gateway/limits/limiter.py), a quota spent on one is refused on the others, Redis failing falls back to
per-instance counts, and tokens are charged from the usage the upstream reports."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.dev import services as devservices

from gateway.limits import limiter
from gateway.ops.metrics import LIMIT_REFUSALS
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


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="maas-limits-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


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
