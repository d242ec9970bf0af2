"""End to end on a LiteMaaS database: the openai SDK -> the gateway (database.schema: litemaas)
-> the real LiteLLM proxy. This LiteLLM has no database, so it knows no virtual keys: the gateway
runs in service_key mode here (passthrough with LiteMaaS's keys is tested against the fake
upstream in tests/integration/test_litemaas.py)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import asyncpg
import openai
import pytest

from gateway.store import litemaas as litemaas_mode
from gateway.config import DatabaseConfig
from tests import litemaas_support as litemaas
from tests.support import eventually, make_config, running_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
async def litemaas_url(postgres_url) -> AsyncIterator[str]:
    url = await litemaas.create_litemaas_database(postgres_url)
    await litemaas_mode.prepare_database(url, DatabaseConfig(schema="litemaas"), apply=True, triggers=True)
    yield url
    await litemaas.drop_database(postgres_url, url)


async def test_a_litemaas_key_through_the_gateway_to_litellm(litellm, litemaas_url, redis_url):
    conn = await asyncpg.connect(litemaas_url)
    try:
        for model in ("gpt-4o-mini", "gpt-4o", "llama-3-8b"):
            await litemaas.add_model(conn, model, restricted=model == "llama-3-8b")
        user_id = await litemaas.add_user(conn)
        for model in ("gpt-4o-mini", "gpt-4o", "llama-3-8b"):
            await litemaas.subscribe(conn, user_id, model)
        key = await litemaas.add_key(conn, user_id, ["gpt-4o-mini", "llama-3-8b"])
        config = make_config(litemaas_url, redis_url, litellm.url, database={"schema": "litemaas"})
        async with running_gateway(config) as gw, openai.AsyncOpenAI(
            base_url=gw.url + "/v1", api_key=key.key, max_retries=0
        ) as client:
            reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "Hello from the mock gpt-4o-mini."

            assert sorted([m.id async for m in client.models.list()]) == ["gpt-4o-mini"]  # llama-3-8b is pending

            with pytest.raises(openai.PermissionDeniedError) as caught:  # not on the key
                await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert (caught.value.status_code, caught.value.body) == (403, {
                "message": "Your API key does not have access to this model. Please check your subscription. "
                           "(model: gpt-4o)",
                "type": "permission_denied_error", "param": "model", "code": "MODEL_ACCESS_DENIED"})

            with pytest.raises(openai.PermissionDeniedError) as caught:  # restricted: pending until approved
                await client.chat.completions.create(model="llama-3-8b", messages=[{"role": "user", "content": "hi"}])
            assert (caught.value.status_code, caught.value.body) == (403, {
                "message": "Your subscription to this model is not active. Please check your subscription. "
                           "(model: llama-3-8b)",
                "type": "permission_denied_error", "param": "model", "code": "SUBSCRIPTION_INACTIVE"})

            await asyncio.wait_for(gw.state.invalidator.postgres_listening.wait(), 10)
            await litemaas.revoke(conn, key.id)  # in LiteMaaS

            async def refused() -> bool:
                try:
                    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
                except openai.AuthenticationError as exc:
                    return exc.body == {
                        "message": "This API key has been revoked. Create a new key to continue.",
                        "type": "authentication_error", "param": None, "code": "API_KEY_REVOKED"}
                return False

            await eventually(refused, timeout=1.0)
    finally:
        await conn.close()
