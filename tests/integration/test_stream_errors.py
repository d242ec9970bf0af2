"""LiteLLM's mid-stream error events, as the fake upstream writes them the way LiteLLM does
(proxy_server.async_data_generator): cleaned, or the gateway's own error, in the stream."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from gateway.ops.accesslog import AccessLog
from tests.fakes.upstream import STREAM_ERROR
from tests.support import bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def stream_events(url: str, key: str, request_id: str) -> list[bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/v1/chat/completions", json=CHAT,
                             headers={**bearer(key), "x-request-id": request_id}) as r:
            assert r.status == 200
            return [e for e in (await r.read()).split(b"\n\n") if e]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, {"message": "The model service failed to answer this request. Please try again later; if it keeps "
                          "failing, give your administrator the request id. (request id: req-stream-500)",
               "type": "api_error", "param": None, "code": "LITELLM_ERROR"}),
        (400, {"message": "Connection reset by [redacted] (key [redacted])", "type": "invalid_request_error",
               "param": None, "code": "400"}),
    ],
)
async def test_an_error_event_mid_stream_is_cleaned_and_logged(pool, postgres_url, redis_url, fake_upstream, status, error):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault, fake_upstream.status = "stream_error", status
    lines: list[str] = []
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        gw.state.access_log = AccessLog(write=lines.append)
        events = await stream_events(gw.url, seeded.key, f"req-stream-{status}")
        gw.state.access_log.flush()
    assert [orjson.loads(e.removeprefix(b"data: "))["object"] for e in events[:2]] == ["chat.completion.chunk"] * 2
    assert events[2:] == [b"data: " + orjson.dumps({"error": error}), b"data: [DONE]"]
    [line] = [orjson.loads(line) for line in "".join(lines).splitlines()]
    assert (line["request_id"], line["status"]) == (f"req-stream-{status}", 200)
    # LiteLLM's whole text is in the log, its key cut to a prefix as in every log line
    assert orjson.loads(line["upstream_error"])["error"]["message"] == STREAM_ERROR.replace("sk-provider-abcdef123456", "sk-prov...")
