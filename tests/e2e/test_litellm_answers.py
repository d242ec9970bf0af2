"""What clients see of LiteLLM's answers, end to end: the official openai SDK and raw aiohttp
-> the gateway -> the real LiteLLM (tests/e2e/litellm-test.yaml).

Headers pass by allow-list (one `date`, no x-litellm-* but what the operator lists, never
LiteLLM's x-ratelimit-*); LiteLLM's errors reach clients without its internals (policies/scrub.py),
and its own text is in the access line of the request id.
"""

from __future__ import annotations

import uuid
from typing import AsyncIterator

import aiohttp
import openai
import orjson
import pytest

from gateway.ops.accesslog import AccessLog
from tests.e2e.conftest import PROVIDER_KEY
from tests.support import RunningGateway, bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.e2e

MODELS = ["gpt-4o-mini", "broken-backend", "not-served-by-litellm"]
BROKEN_TEXT = ("litellm.InternalServerError: InternalServerError: OpenAIException - Connection error.\n\nLiteLLM: "
               "model group 'broken-backend' failed with the error above. No fallback was attempted.")
FAILED = ("The model service failed to answer this request. Please try again later; if it keeps failing, give your "
          "administrator the request id.")


@pytest.fixture(scope="module")
async def gateway(litellm, pool, postgres_url, redis_url) -> AsyncIterator[tuple[RunningGateway, list[str]]]:
    config = make_config(postgres_url, redis_url, litellm.url, response_headers={"allow": ["x-litellm-response-cost"]})
    lines: list[str] = []
    async with running_gateway(config) as gw:
        gw.state.access_log = AccessLog(write=lines.append)
        yield gw, lines


@pytest.fixture(scope="module")
async def key(gateway, pool) -> str:
    return (await seed_key(pool, models=MODELS)).key


def access_line(gw: RunningGateway, lines: list[str], request_id: str) -> dict:
    gw.state.access_log.flush()
    [line] = [parsed for parsed in map(orjson.loads, "".join(lines).splitlines()) if parsed["request_id"] == request_id]
    return line


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def assert_headers_are_the_gateways(headers) -> None:
    """No x-litellm-* header but the one the operator allowed, none of LiteLLM's x-ratelimit-*,
    one `date` (uvicorn's: LiteLLM's is dropped), at most one `server`, the request id."""
    pairs = headers.multi_items() if hasattr(headers, "multi_items") else headers.items()  # httpx's, aiohttp's
    names = [name.lower() for name, _ in pairs]
    assert {name for name in names if name.startswith("x-litellm-")} <= {"x-litellm-response-cost"}
    assert [name for name in names if "ratelimit" in name] == []
    assert (names.count("date"), names.count("x-request-id")) == (1, 1) and names.count("server") <= 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_successful_answer_carries_only_allowed_headers(gateway, key, stream):
    gw, _ = gateway
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + "/v1/chat/completions", json=chat("gpt-4o-mini", stream=stream),
                             headers=bearer(key)) as r:
            body = await r.read()
    assert r.status == 200
    if stream:  # LiteLLM writes no x-litellm-response-cost on a stream's headers: nothing of its own passes
        assert body.endswith(b"data: [DONE]\n\n")
        assert_headers_are_the_gateways(r.headers)
        assert "x-litellm-response-cost" not in r.headers
        assert (r.headers["content-type"], r.headers["cache-control"], r.headers["x-accel-buffering"]) == (
            "text/event-stream; charset=utf-8", "no-cache", "no")
    else:
        assert orjson.loads(body)["choices"][0]["message"]["content"] == "Hello from the mock gpt-4o-mini."
        assert_headers_are_the_gateways(r.headers)
        assert float(r.headers["x-litellm-response-cost"]) > 0  # allowed by the operator
        assert (r.headers["content-type"], int(r.headers["content-length"])) == ("application/json", len(body))


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_backend_answers_the_gateways_error_and_logs_litellms(gateway, key, broken_api_base, stream):
    gw, lines = gateway
    request_id = f"req-broken-{uuid.uuid4().hex[:8]}"
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(model="broken-backend", messages=[{"role": "user", "content": "hi"}],
                                              stream=stream, extra_headers={"x-request-id": request_id})
    assert caught.value.status_code == 500
    assert caught.value.body == {"message": f"{FAILED} (request id: {request_id})", "type": "api_error",
                                 "param": None, "code": "LITELLM_ERROR"}
    raw = caught.value.response.text
    host_port = broken_api_base.removeprefix("http://").removesuffix("/v1")
    for secret in (host_port, PROVIDER_KEY, PROVIDER_KEY[-8:], "litellm.", "LiteLLM", "OpenAIException"):
        assert secret not in raw
    assert caught.value.response.headers["x-request-id"] == request_id
    assert_headers_are_the_gateways(caught.value.response.headers)
    line = access_line(gw, lines, request_id)
    assert (line["status"], line["upstream_status"]) == (500, 500)
    assert orjson.loads(line["upstream_error"])["error"]["message"] == BROKEN_TEXT


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o-mini"}, "messages"),
        ("/v1/completions", {"model": "gpt-4o-mini"}, "prompt"),
    ],
)
async def test_a_parameter_error_keeps_the_words_that_name_the_parameter(gateway, key, path, body, param):
    gw, lines = gateway
    request_id = f"req-param-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        async with http.post(gw.url + path, json=body, headers={**bearer(key), "x-request-id": request_id}) as r:
            answer = await r.json()
    assert r.status == 400
    route = path.removeprefix("/v1")
    assert answer == {"error": {"message": f"{route}: Missing required parameter: '{param}'.",
                                "type": "invalid_request_error", "param": param, "code": "400"}}
    assert_headers_are_the_gateways(r.headers)
    assert access_line(gw, lines, request_id)["upstream_status"] == 400


async def test_a_request_litellm_cannot_read_keeps_its_meaning_without_litellms_bookkeeping(gateway, key):
    """`messages` that is not a list: LiteLLM's 400 reads "Invalid request format: litellm.APIConnectionError:
    APIConnectionError: OpenAIException - ... LiteLLM: model group ... No fallback was attempted."."""
    gw, _ = gateway
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(model="gpt-4o-mini", messages="hi")  # type: ignore[arg-type]
    assert caught.value.body == {"message": "Invalid request format: 'str' object has no attribute 'get'",
                                 "type": "invalid_request_error", "param": None, "code": "400"}
