"""Per-model breakers on a real gateway (uvicorn), the fake upstream injecting a model's failures.

A model whose provider fails (LiteLLM relays it as a 500) gets its own breaker: one key
hammering it cannot open it, three keys do, and then only that model answers 503
MODEL_UNAVAILABLE; LiteLLM's breaker and every other model are untouched.
"""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from gateway.ops.metrics import BREAKER_STATE, BREAKER_TRANSITIONS
from tests.support import bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

MODEL_UNAVAILABLE = {
    "error": {
        "message": "This model is temporarily unavailable. Please try again later.",
        "type": "service_unavailable_error",
        "param": None,
        "code": "MODEL_UNAVAILABLE",
    }
}
BREAKER = {"consecutive_failures": 3, "min_requests": 1000, "reset_timeout_seconds": 60, "min_distinct_keys": 3}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def chat(http: aiohttp.ClientSession, url: str, key: str, model: str) -> tuple[int, dict, bytes]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url + "/v1/chat/completions", json=body, headers=bearer(key)) as r:
        return r.status, r.headers.copy(), await r.read()


async def test_one_key_hammering_a_failing_model_does_not_open_its_breaker(pool, postgres_url, redis_url, fake_upstream, http):
    hammer = await seed_key(pool, models=["gpt-4o", "gpt-4o-mini"])
    other = await seed_key(pool, models=["gpt-4o"])
    fake_upstream.failing_models = {"gpt-4o"}
    config = make_config(postgres_url, redis_url, fake_upstream.url, breaker=BREAKER, health={"integration_check": False})
    async with running_gateway(config) as gw:
        for _ in range(20):
            assert (await chat(http, gw.url, hammer.key, "gpt-4o"))[0] == 500  # each one reached LiteLLM
        assert len(fake_upstream.seen) == 20
        assert gw.state.model_breakers.get("gpt-4o", gw.state.known_models).state == "closed"
        assert gw.state.breaker.state == "closed"
        fake_upstream.failing_models = set()
        assert (await chat(http, gw.url, other.key, "gpt-4o"))[0] == 200  # nobody else is shut out


async def test_failures_from_three_keys_open_only_that_models_breaker(pool, postgres_url, redis_url, fake_upstream, http):
    keys = [await seed_key(pool, models=["gpt-4o", "gpt-4o-mini"]) for _ in range(3)]
    fake_upstream.failing_models = {"gpt-4o"}
    opened = BREAKER_TRANSITIONS.labels(target="model:gpt-4o", from_state="closed", to_state="open")._value.get()
    config = make_config(postgres_url, redis_url, fake_upstream.url, breaker=BREAKER)
    async with running_gateway(config) as gw:
        for seeded in keys[:2]:
            for _ in range(3):
                assert (await chat(http, gw.url, seeded.key, "gpt-4o"))[0] == 500
        assert gw.state.model_breakers.get("gpt-4o", gw.state.known_models).state == "closed"
        assert (await chat(http, gw.url, keys[2].key, "gpt-4o"))[0] == 500  # the third key's failure opens it
        assert gw.state.model_breakers.get("gpt-4o", gw.state.known_models).state == "open"
        assert BREAKER_STATE.labels(target="model:gpt-4o")._value.get() == 1
        assert BREAKER_TRANSITIONS.labels(target="model:gpt-4o", from_state="closed", to_state="open")._value.get() == opened + 1

        seen = len(fake_upstream.seen)
        for seeded in keys:
            status, headers, body = await chat(http, gw.url, seeded.key, "gpt-4o")
            assert (status, orjson.loads(body)) == (503, MODEL_UNAVAILABLE)
            assert 55 <= int(headers["Retry-After"]) <= 60
        assert len(fake_upstream.seen) == seen  # refused without asking LiteLLM

        status, _, body = await chat(http, gw.url, keys[0].key, "gpt-4o-mini")  # another model: served
        assert status == 200 and orjson.loads(body)["model"] == "gpt-4o-mini"
        assert gw.state.breaker.state == "closed"  # LiteLLM itself is fine

        async with http.get(gw.url + "/health/integration") as r:
            report = await r.json()
        assert r.status == 200 and report["status"] == "degraded"
        assert report["circuit_breakers"]["model:gpt-4o"] == "open"
        assert report["circuit_breakers"]["litellm"] == "closed"


async def test_a_relayed_503_counts_for_the_model_and_a_bare_503_for_litellm(pool, postgres_url, redis_url, fake_upstream, http):
    """LiteLLM marks the answers it makes with x-litellm-call-id: a 503 with it is a provider's,
    relayed (the model's breaker); a 503 without it comes from LiteLLM's own failure or a proxy in
    front of it (LiteLLM's breaker)."""
    seeded = await seed_key(pool, models=["gpt-4o"])
    config = make_config(postgres_url, redis_url, fake_upstream.url, breaker={**BREAKER, "min_distinct_keys": 1},
                         health={"integration_check": False})
    async with running_gateway(config) as gw:
        fake_upstream.failing_models = {"gpt-4o"}  # 500 with LiteLLM's call id
        for _ in range(3):
            assert (await chat(http, gw.url, seeded.key, "gpt-4o"))[0] == 500
        assert gw.state.breaker.state == "closed"
        assert gw.state.model_breakers.get("gpt-4o", gw.state.known_models).state == "open"


async def test_models_the_gateway_does_not_know_get_no_breaker_of_their_own(pool, postgres_url, redis_url, fake_upstream, http):
    """Known models are those of the database when the gateway last looked (every 30 s): one
    added after the start is not known yet, and gets no breaker (nor a metric label)."""
    model = f"new-model-{uuid.uuid4().hex[:8]}"
    fake_upstream.failing_models = {model}
    config = make_config(postgres_url, redis_url, fake_upstream.url, breaker={**BREAKER, "min_distinct_keys": 1},
                         health={"integration_check": False})
    async with running_gateway(config) as gw:
        seeded = await seed_key(pool, models=[model])
        assert model not in gw.state.known_models
        for _ in range(5):
            assert (await chat(http, gw.url, seeded.key, model))[0] == 500  # none refused by a breaker
        assert gw.state.model_breakers.all() == []
        assert gw.state.breaker.state == "closed"
