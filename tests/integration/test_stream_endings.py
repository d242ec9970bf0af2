"""How a stream that does not end normally is ended and logged: LiteLLM breaking off (an
OpenAI-shaped SSE error event, the access line says why) and the client leaving (LiteLLM's
request cancelled, 499 in the access line, not 500)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from gateway.ops.accesslog import AccessLog
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

STREAM = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


class Lines:
    """The gateway's access lines, as written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def of(self, request_id: str) -> list[dict]:
        lines = [orjson.loads(line) for line in self.text.splitlines() if line]
        return [line for line in lines if line.get("request_id") == request_id]


async def test_litellm_breaking_off_mid_stream_is_an_error_event_and_logged_with_the_request_id(
    pool, postgres_url, redis_url, fake_upstream
):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault = "stream_cut"
    lines = Lines()
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        gw.state.access_log = AccessLog(write=lines.write)
        async with aiohttp.ClientSession() as http:
            async with http.post(gw.url + "/v1/chat/completions", json=STREAM,
                                 headers={**bearer(seeded.key), "x-request-id": "req-cut-1"}) as r:
                assert r.status == 200 and r.headers["x-request-id"] == "req-cut-1"
                body = await r.read()
        gw.state.access_log.flush()
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
    lines = Lines()
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        gw.state.access_log = AccessLog(write=lines.write)
        async with aiohttp.ClientSession() as http:
            response = await http.post(gw.url + "/v1/chat/completions", json=STREAM,
                                       headers={**bearer(seeded.key), "x-request-id": "req-gone-1"})
            assert response.status == 200
            await response.content.readany()
            response.close()  # the client goes away mid-stream
        await eventually(lambda: fake_upstream.cancelled == 1, timeout=5)

        def logged() -> bool:
            gw.state.access_log.flush()
            return bool(lines.of("req-gone-1"))

        await eventually(logged, timeout=5)
    [line] = lines.of("req-gone-1")
    assert (line["status"], line["code"]) == (499, "CLIENT_CLOSED_REQUEST")
