"""End to end, issue 13: the gateway checks exactly what the real LiteLLM acts on.

Requests are written byte for byte on a socket (tests.support.raw_post). Each attack is
first shown to work on LiteLLM itself (called directly with the master key): the model
LiteLLM serves is not the one the body seems to name. Through the gateway it is refused,
while the same route with a legitimate body is served. Attribution is read from LiteLLM's
own logging (tests/e2e/attribution_log.py): the end user it bills.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from tests.support import MASTER_KEY, eventually, make_config, raw_post, running_gateway, seed_key

pytestmark = pytest.mark.e2e

FORM_ATTACK = b'{"model": "gpt-4o-mini", "input": "x", "pad": "&model=text-embedding-3-small&input=hi&"}'
LLAMA = b'{"model": "llama-3-8b", "messages": [{"role": "user", "content": "hi"}]}'
CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
DEPLOYMENT = "/openai/deployments/gpt-4o-mini/chat/completions"


@pytest.fixture(scope="module")
async def gateway(litellm, pool, postgres_url, redis_url):
    async with running_gateway(make_config(postgres_url, redis_url, litellm.url)) as gw:
        yield gw


@pytest.fixture
async def seeded(pool):
    """A key allowed gpt-4o-mini only."""
    return await seed_key(pool, models=["gpt-4o-mini"])


async def test_a_form_encoded_body_is_refused(litellm, gateway, seeded):
    """LiteLLM reads this JSON as a form and serves text-embedding-3-small (the control, on LiteLLM
    directly); the gateway, whose key allows only gpt-4o-mini, refuses it with 415."""
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    status, _, body = await raw_post(litellm.url, "/v1/embeddings", [("Authorization", f"Bearer {MASTER_KEY}"), *form],
                                     FORM_ATTACK)
    assert (status, orjson.loads(body)["model"]) == (200, "text-embedding-3-small")

    status, _, body = await raw_post(gateway.url, "/v1/embeddings", [("Authorization", f"Bearer {seeded.key}"), *form],
                                     FORM_ATTACK)
    assert status == 415
    assert orjson.loads(body)["error"] == {
        "message": "This route does not read a body sent this way. (send the body as JSON with 'Content-Type: "
                   "application/json', not application/x-www-form-urlencoded (curl -d without -H 'Content-Type: "
                   "application/json' sends that))",
        "type": "invalid_request_error",
        "param": None,
        "code": "UNSUPPORTED_MEDIA_TYPE",
    }


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [("text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"), ("Application/Json", 400, "INVALID_REQUEST"), (None, 400, "INVALID_REQUEST")],
    ids=["text-plain", "json-case", "none"],
)
async def test_a_deployment_route_with_another_model_in_the_body_is_refused(litellm, gateway, seeded, content_type,
                                                                            status, code):
    """LiteLLM reads these bodies as JSON and reports llama-3-8b as the model it served (the control);
    the gateway used to read none of them."""
    typed = [("Content-Type", content_type)] if content_type else []
    got, _, body = await raw_post(litellm.url, DEPLOYMENT, [("api-key", MASTER_KEY), *typed], LLAMA)
    assert (got, orjson.loads(body)["model"]) == (200, "llama-3-8b")

    got, _, body = await raw_post(gateway.url, DEPLOYMENT, [("api-key", seeded.key), *typed], LLAMA)
    assert (got, orjson.loads(body)["error"]["code"]) == (status, code)


@pytest.mark.parametrize(
    ("target", "content_type", "body"),
    [
        ("/v1/chat/completions", "Application/Json; charset=utf-8", CHAT),
        ("/v1/chat/completions", None, CHAT),
        (DEPLOYMENT, "application/json", CHAT),
        (DEPLOYMENT, None, b'{"messages": [{"role": "user", "content": "hi"}]}'),
    ],
    ids=["json-charset", "no-type", "deployment-same-model", "deployment-no-body-model"],
)
async def test_legitimate_requests_are_served(gateway, seeded, target, content_type, body):
    typed = [("Content-Type", content_type)] if content_type else []
    status, _, answer = await raw_post(gateway.url, target, [("Authorization", f"Bearer {seeded.key}"), *typed], body)
    assert status == 200, answer
    assert orjson.loads(answer)["choices"][0]["message"]["content"] == "Hello from the mock gpt-4o-mini."


def attributed(log: Path) -> list[dict]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines()] if log.exists() else []


async def test_litellm_bills_the_keys_user_whatever_the_client_says(gateway, seeded, attribution_log):
    """service_key mode: the client names another end user every way LiteLLM reads one (its headers,
    `user`, `metadata.user_id`); LiteLLM attributes the call to the key's user."""
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": victim,
                         "metadata": {"user_id": victim}})
    headers = [("Authorization", f"Bearer {seeded.key}"), ("Content-Type", "application/json"),
               ("x-litellm-end-user-id", victim), ("x-litellm-customer-id", victim)]
    status, _, _ = await raw_post(gateway.url, "/v1/chat/completions", headers, body)
    assert status == 200
    await eventually(lambda: any(r["end_user"] == seeded.user_id for r in attributed(attribution_log)), timeout=10)
    mine = [r for r in attributed(attribution_log) if seeded.user_id in (r["end_user"], r["metadata_end_user"])]
    assert mine == [{"call_id": mine[0]["call_id"], "end_user": seeded.user_id, "metadata_end_user": seeded.user_id,
                     "model_group": "gpt-4o-mini"}]
    assert all(victim not in (r["end_user"], r["metadata_end_user"]) for r in attributed(attribution_log))
