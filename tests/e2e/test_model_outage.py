"""End to end: one model's backend down behind the real LiteLLM (broken-backend refuses
connections; LiteLLM answers 500 for it). Only that model's breaker opens, and only once
three keys have seen it fail; gpt-4o-mini and LiteLLM's breaker are untouched."""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp
import openai
import pytest

from tests.e2e.conftest import PROVIDER_KEY
from tests.support import MASTER_KEY, bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def keys(pool) -> list:
    """Seeded before the gateway starts: it knows the models of its database at start (and every 30 s)."""
    return [await seed_key(pool, models=["broken-backend", "gpt-4o-mini"]) for _ in range(3)]


@pytest.fixture
async def gateway(keys, litellm, pool, postgres_url, redis_url) -> AsyncIterator:
    breaker = {"consecutive_failures": 3, "min_requests": 1000, "reset_timeout_seconds": 60, "min_distinct_keys": 3}
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url, breaker=breaker)) as gw:
        yield gw


async def test_a_broken_backend_opens_only_its_models_breaker_after_three_keys(gateway, keys):
    clients = [openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=k.key, max_retries=0) for k in keys]
    try:
        for _ in range(4):  # one key, more failures than consecutive_failures
            with pytest.raises(openai.InternalServerError) as caught:
                await clients[0].chat.completions.create(model="broken-backend", messages=MESSAGES)
            assert caught.value.status_code == 500
            assert PROVIDER_KEY not in str(caught.value.body)
        model = gateway.state.model_breakers.get("broken-backend", gateway.state.known_models)
        assert model.state == "closed"
        for client in clients[1:]:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="broken-backend", messages=MESSAGES)
        assert model.state == "open"

        with pytest.raises(openai.APIStatusError) as caught:
            await clients[0].chat.completions.create(model="broken-backend", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert caught.value.body == {
            "message": "This model is temporarily unavailable. Please try again later.",
            "type": "service_unavailable_error",
            "param": None,
            "code": "MODEL_UNAVAILABLE",
        }
        assert 55 <= int(caught.value.response.headers["retry-after"]) <= 60

        reply = await clients[2].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.choices[0].message.content == "Hello from the mock gpt-4o-mini."
        assert gateway.state.breaker.state == "closed"
    finally:
        for client in clients:
            await client.close()


async def test_litellm_marks_the_errors_it_relays_with_its_call_id(litellm):
    """The fact gateway/serving/upstream.py relies on to tell a relayed provider failure (the model's
    breaker) from LiteLLM's own 502/503/504 (LiteLLM's breaker): LiteLLM's error answers carry
    x-litellm-call-id."""
    body = {"model": "broken-backend", "messages": MESSAGES}
    async with aiohttp.ClientSession() as http:
        async with http.post(litellm.url + "/v1/chat/completions", json=body, headers=bearer(MASTER_KEY)) as r:
            assert r.status == 500
            assert r.headers.get("x-litellm-call-id")
