"""How a stream that does not end normally is ended and logged: LiteLLM breaking off (an
OpenAI-shaped SSE error event, the access line says why) and the client leaving (LiteLLM's
request cancelled, 499 in the access line, not 500)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tests.access_lines import access_lines
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

STREAM = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def test_litellm_breaking_off_mid_stream_is_an_error_event_and_logged_with_the_request_id(
    pool, postgres_url, redis_url, fake_upstream
):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault = "stream_cut"
    with access_lines() as lines:
        async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
            async with aiohttp.ClientSession() as http:
                async with http.post(gw.url + "/v1/chat/completions", json=STREAM,
                                     headers={**bearer(seeded.key), "x-request-id": "req-cut-1"}) as r:
                    assert r.status == 200 and r.headers["x-request-id"] == "req-cut-1"
                    body = await r.read()
    last = [e for e in body.split(b"\n\n") if e][-1]
    assert orjson.loads(last.removeprefix(b"data: ")) == {
        "error": {
            "message": "The model service stopped answering mid-stream. Please try again.",
            "type": "service_unavailable_error",
            "param": None,
            "code": "LITELLM_STREAM_INTERRUPTED",
        }
    }
    [line] = lines.of("req-cut-1")
    assert (line["status"], line["stream_error"]) == (200, "ClientPayloadError")


async def test_a_client_leaving_mid_stream_cancels_litellms_request_and_is_logged_as_499(
    pool, postgres_url, redis_url, fake_upstream
):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.stream_chunks, fake_upstream.chunk_gap = 50, 0.2  # a 10 s stream
    with access_lines() as lines:
        async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
            async with aiohttp.ClientSession() as http:
                response = await http.post(gw.url + "/v1/chat/completions", json=STREAM,
                                           headers={**bearer(seeded.key), "x-request-id": "req-gone-1"})
                assert response.status == 200
                await response.content.readany()
                response.close()  # the client goes away mid-stream
            await eventually(lambda: fake_upstream.cancelled == 1, timeout=5)
            await eventually(lambda: bool(lines.of("req-gone-1")), timeout=5)
    [line] = lines.of("req-gone-1")
    assert (line["status"], line["code"]) == (499, "CLIENT_CLOSED_REQUEST")
