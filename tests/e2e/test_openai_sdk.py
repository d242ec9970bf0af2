"""End to end: the official openai SDK -> the gateway -> the real LiteLLM proxy (mock models)."""

from __future__ import annotations

from typing import AsyncIterator

import openai
import pytest

from tests.support import make_config, running_gateway, seed_key

pytestmark = pytest.mark.e2e

FRIENDLY = "Your API key does not have access to this model. Please check your subscription."


@pytest.fixture(scope="module")
async def gateway(litellm, pool, postgres_url, redis_url) -> AsyncIterator[str]:
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url)) as gw:
        yield gw.url


@pytest.fixture
async def client(gateway, pool) -> AsyncIterator[openai.AsyncOpenAI]:
    seeded = await seed_key(pool, models=["gpt-4o-mini", "text-embedding-3-small"])
    async with openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=seeded.key, max_retries=0) as sdk:
        yield sdk


async def test_chat_completion(client):
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from the mock gpt-4o-mini."
    assert reply.model.endswith("gpt-4o-mini")


async def test_streamed_chat_completion(client):
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(parts) == "Hello from the mock gpt-4o-mini."
    assert len(parts) > 1  # it arrived as a stream of chunks


async def test_embeddings(client):
    result = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert result.data[0].embedding == [0.1, 0.2, 0.3, 0.4]


async def test_models_list_shows_only_what_the_key_may_use(client):
    models = [m.id async for m in client.models.list()]
    assert sorted(models) == ["gpt-4o-mini", "text-embedding-3-small"]


async def test_denied_model_raises_permission_denied_with_the_friendly_message(client):
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 403
    assert caught.value.code == "MODEL_ACCESS_DENIED"
    assert caught.value.message == f"Error code: 403 - {FRIENDLY} (model: gpt-4o)"
    assert caught.value.body == {
        "message": f"{FRIENDLY} (model: gpt-4o)",
        "type": "permission_denied_error",
        "param": "model",
        "code": "MODEL_ACCESS_DENIED",
    }


async def test_unknown_key_raises_authentication_error(gateway):
    async with openai.AsyncOpenAI(base_url=gateway + "/v1", api_key="sk-unknown-key", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "INVALID_API_KEY"


async def test_a_model_litellm_does_not_serve_answers_a_helpful_400_naming_it(gateway, pool):
    """A model the gateway allows but LiteLLM does not serve: LiteLLM's 400, in OpenAI's shape and
    cleaned (policies/scrub.py), still names the model and says where to look."""
    seeded = await seed_key(pool, models=["not-served-by-litellm"])
    async with openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=seeded.key, max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(model="not-served-by-litellm", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "/chat/completions: Invalid model name passed in model=not-served-by-litellm. "
                   "Call `/v1/models` to view available models for your key.",
        "type": "invalid_request_error",
        "param": None,
        "code": "400",  # LiteLLM's own code: the status as a string
    }
