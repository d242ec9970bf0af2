"""End to end on the real LiteLLM: `off` enforcement serves a request the model check would
refuse (and still refuses a revoked key), and streamed usage is what LiteLLM sends: a usage
chunk only when the client asks (`stream_options.include_usage`), counted by the gateway."""

from __future__ import annotations

import openai
import pytest
from prometheus_client import REGISTRY

from gateway.ops.metrics import fold
from tests.support import eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "hi"}]


def tokens(model: str, kind: str) -> float:
    fold()  # the hot path's counts wait in metrics.TALLY until a scrape or a fold
    return REGISTRY.get_sample_value("maas_gateway_tokens_total", {"model": model, "type": kind}) or 0.0


async def test_off_mode_serves_a_model_the_key_does_not_list_but_not_a_revoked_key(litellm, pool, postgres_url, redis_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    revoked = await seed_key(pool, models=["gpt-4o-mini"], key_active=False)
    config = make_config(postgres_url, redis_url, litellm.url, enforcement={"mode": "off"})
    async with running_gateway(config) as gw:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=seeded.key, max_retries=0) as sdk:
            reply = await sdk.chat.completions.create(model="gpt-4o", messages=HI)  # not in the key's list
        assert reply.choices[0].message.content == "Hello from the mock gpt-4o."
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=revoked.key, max_retries=0) as sdk:
            with pytest.raises(openai.AuthenticationError) as caught:
                await sdk.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert (caught.value.status_code, caught.value.code) == (401, "API_KEY_REVOKED")
    assert caught.value.message == "Error code: 401 - This API key has been revoked. Create a new key to continue."


async def test_streamed_usage_arrives_only_when_asked_and_is_counted(litellm, pool, postgres_url, redis_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url)) as gw:
        async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=seeded.key, max_retries=0) as sdk:
            plain = [c async for c in await sdk.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)]
            assert [c.usage for c in plain if c.usage is not None] == []  # LiteLLM sends none unasked

            before = tokens("gpt-4o-mini", "prompt"), tokens("gpt-4o-mini", "completion")
            chunks = [c async for c in await sdk.chat.completions.create(
                model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True})]
    [usage] = [c.usage for c in chunks if c.usage is not None]
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    expected = (before[0] + usage.prompt_tokens, before[1] + usage.completion_tokens)
    await eventually(lambda: (tokens("gpt-4o-mini", "prompt"), tokens("gpt-4o-mini", "completion")) == expected, timeout=5)
