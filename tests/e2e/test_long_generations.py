"""End to end: generations that take longer than LITELLM_TIMEOUT, through the real LiteLLM.

slow-model answers after SLOW_SECONDS (3 s); the gateway here has LITELLM_TIMEOUT=1000 ms,
which bounds only its own calls: inference waits up to litellm.request_timeout_seconds.
"""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from gateway.config import parse_config
from tests.e2e.conftest import SLOW_SECONDS
from tests.support import MASTER_KEY, running_gateway, seed_key

pytestmark = pytest.mark.e2e


def config_with_env(postgres_url: str, redis_url: str, litellm_url: str, **env: str):
    environ = {"DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": litellm_url,
               "LITELLM_API_KEY": MASTER_KEY, **env}
    data = {"health": {"interval_seconds": 0.5}, "litellm": {"sync_users": False}}
    return parse_config(data, environ)


async def test_slow_generations_beyond_litellm_timeout_are_served_and_leave_the_breaker_closed(
    litellm, pool, postgres_url, redis_url
):
    config = config_with_env(postgres_url, redis_url, litellm.url, LITELLM_TIMEOUT="1000")
    assert config.litellm.timeout_ms == 1000 and config.litellm.request_timeout_seconds == 600
    seeded = await seed_key(pool, models=["slow-model"])
    async with running_gateway(config) as gw:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=seeded.key, max_retries=0) as sdk:
            messages = [{"role": "user", "content": "hi"}]

            async def plain() -> str:
                reply = await sdk.chat.completions.create(model="slow-model", messages=messages)
                return reply.choices[0].message.content

            async def streamed() -> str:
                stream = await sdk.chat.completions.create(model="slow-model", messages=messages, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            started = time.perf_counter()
            answers = await asyncio.gather(plain(), streamed(), plain(), streamed(), plain(), streamed())
            elapsed = time.perf_counter() - started
        assert answers == ["Hello from the slow mock."] * 6
        assert elapsed >= SLOW_SECONDS  # they did take longer than LITELLM_TIMEOUT
        assert gw.state.breaker.state == "closed"
