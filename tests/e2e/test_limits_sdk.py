"""Limits seen through the official openai SDK on the real LiteLLM: a RATE_LIMITED 429 is retried
and succeeds, QUOTA_EXCEEDED is a RateLimitError without retries, and the tokens charged are the
ones LiteLLM reported, for plain answers and for streams whose usage chunk the gateway asked for."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import openai
import pytest
from prometheus_client import REGISTRY

from gateway.ops.metrics import fold
from policies.limits import add_months, month_start
from tests.support import eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "hi"}]


def refusals(scope: str, limit: str) -> float:
    fold()
    return REGISTRY.get_sample_value("maas_gateway_limit_refusals_total",
                                     {"scope": scope, "limit": limit, "result": "refused"}) or 0.0


async def test_the_sdk_retries_a_rate_limited_request_and_succeeds(litellm, pool, postgres_url, redis_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini", "slow-model"])
    await pool.execute("UPDATE api_keys SET max_parallel_requests = 1 WHERE id = $1", seeded.key_id)
    before = refusals("key", "max_parallel_requests")
    slots = f"maas:lim:{{u:{seeded.user_id}}}:key:{seeded.key_id}:par"
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url)) as gw:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=seeded.key, max_retries=20) as sdk:
            slow = asyncio.create_task(sdk.chat.completions.create(model="slow-model", messages=HI))
            await eventually(lambda: gw.state.redis.zcard(slots), timeout=10)  # the slow one holds the key's slot
            reply = await sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
            assert reply.parse().choices[0].message.content == "Hello from the mock gpt-4o-mini."
            await slow
    assert reply.retries_taken >= 1  # refused with Retry-After: 1 while the slow one ran, then served
    assert refusals("key", "max_parallel_requests") - before == reply.retries_taken


async def test_quota_exceeded_is_a_rate_limit_error_the_sdk_does_not_retry(litellm, pool, postgres_url, redis_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await pool.execute("UPDATE subscriptions SET quota_requests = 1 WHERE user_id = $1", seeded.user_id)
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url)) as gw:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=seeded.key, max_retries=5) as sdk:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
            before = refusals("subscription", "quota_requests")
            with pytest.raises(openai.RateLimitError) as caught:
                await sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert (caught.value.status_code, caught.value.code) == (429, "QUOTA_EXCEEDED")
    assert caught.value.response.headers["x-should-retry"] == "false"
    resets = datetime.fromtimestamp(add_months(month_start(time.time()), 1), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    assert caught.value.message == (
        "Error code: 429 - Your usage quota is used up. Contact your administrator to raise it, or wait for it to "
        f"reset. (the request quota of your subscription to this model (1) is used up; it resets at {resets})")
    assert refusals("subscription", "quota_requests") - before == 1  # one answer: no retry


async def test_tokens_charged_are_what_litellm_reported_plain_and_streamed(litellm, pool, postgres_url, redis_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await pool.execute("UPDATE subscriptions SET quota_tokens = 100000 WHERE user_id = $1", seeded.user_id)
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url)) as gw:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=seeded.key, max_retries=0) as sdk:
            plain = await sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
            await gw.state.limiter.settle()
            raw = await sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI, stream=True)
            after_plain = int(raw.headers["x-ratelimit-remaining-tokens"])
            chunks = [c async for c in raw.parse()]
            assert [c.usage for c in chunks if c.usage is not None] == []  # the usage chunk asked for is removed
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the mock gpt-4o-mini."
            await gw.state.limiter.settle()
            raw = await sdk.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True})
            after_stream = int(raw.headers["x-ratelimit-remaining-tokens"])
            [usage] = [c.usage async for c in raw.parse() if c.usage is not None]
    assert after_plain == 100000 - plain.usage.total_tokens
    assert after_stream == after_plain - usage.total_tokens  # the unasked stream was charged what LiteLLM reports
