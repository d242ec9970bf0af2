"""Graceful drain on SIGTERM end to end: `maas-gateway serve` processes in front of the real
LiteLLM, whose slow-model answers after SLOW_SECONDS (mock_delay), called with the openai SDK.

A request counts as in flight once its body has gone out to the gateway (httpcore's `trace`
extension tells when), so the signal is sent to a gateway that holds every one of them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import httpx
import openai
import pytest

from tests.e2e.conftest import SLOW_SECONDS
from tests.processes import Gateway, gateway_env
from tests.support import eventually, seed_key

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]
SLOW_ANSWER = "Hello from the slow mock."  # slow-model's mock_response (tests/e2e/litellm-test.yaml)
SHUTTING_DOWN = {
    "error": {
        "message": "This gateway instance is shutting down. Please try again.",
        "type": "service_unavailable_error",
        "param": None,
        "code": "SHUTTING_DOWN",
    }
}


@pytest.fixture
def env(postgres_url, redis_url, litellm) -> dict[str, str]:
    return gateway_env(postgres_url, redis_url, litellm.url)


class Sent:
    """Counts requests whose body the SDK's HTTP client has finished sending."""

    def __init__(self) -> None:
        self.count = 0

    async def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "http11.send_request_body.complete":
            self.count += 1

    async def _hook(self, request: httpx.Request) -> None:
        request.extensions["trace"] = self._trace

    def sdk(self, url: str, key: str) -> openai.AsyncOpenAI:
        """An SDK client of its own (its own connections), no retries: each answer is the gateway's."""
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._hook]})
        return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, http_client=http)


async def plain(sdk: openai.AsyncOpenAI) -> str:
    raw = await sdk.chat.completions.with_raw_response.create(model="slow-model", messages=MESSAGES)
    assert raw.status_code == 200
    return raw.parse().choices[0].message.content


async def streamed(sdk: openai.AsyncOpenAI) -> str:
    raw = await sdk.chat.completions.with_raw_response.create(model="slow-model", messages=MESSAGES, stream=True)
    assert raw.status_code == 200
    return "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])


async def is_draining(url: str) -> bool:
    async with httpx.AsyncClient() as fresh:  # a connection of its own
        r = await fresh.get(url + "/health/ready")
        return r.status_code == 503 and r.json()["status"] == "draining"


async def test_sigterm_lets_slow_litellm_answers_in_flight_finish_then_exits(pool, env, tmp_path):
    seeded = await seed_key(pool, models=["slow-model"])
    gateway = Gateway(tmp_path, env, {"drain_delay_seconds": 2, "drain_seconds": 60})
    sent = Sent()
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.start(http)
        async with sent.sdk(gateway.url, seeded.key) as sdk:
            calls = [asyncio.create_task(plain(sdk)) for _ in range(10)]
            calls += [asyncio.create_task(streamed(sdk)) for _ in range(3)]
            await eventually(lambda: sent.count == 13, timeout=15)
            gateway.terminate()
            signalled = time.monotonic()
            await eventually(lambda: is_draining(gateway.url), timeout=1.0)
            assert time.monotonic() - signalled < 1.0  # readiness turned 503 at once

            async with sent.sdk(gateway.url, seeded.key) as newcomer:  # a new connection, within the delay
                late = asyncio.create_task(plain(newcomer))
                await eventually(lambda: sent.count == 14, timeout=1.5)
                assert time.monotonic() - signalled < 2  # sent while connections were still accepted
                answers = await asyncio.wait_for(asyncio.gather(*calls, late), 30)
            last_answer = time.monotonic()
        assert answers == [SLOW_ANSWER] * 14  # LiteLLM's answer, every one: none cut by the drain
        assert last_answer - signalled >= SLOW_SECONDS  # the late one took its 3 s, past the delay's end
        assert await gateway.wait(timeout=15) in (0, -signal.SIGTERM)  # exits by itself ...
        assert time.monotonic() - last_answer < 10  # ... once the last answer is out, not at drain_seconds
    finally:
        await gateway.stop()
    log = gateway.log.read_text()
    assert "draining; readiness is 503" in log
    assert "Application shutdown complete." in log


async def test_answers_not_started_when_the_drain_time_is_over_get_503_shutting_down(pool, env, tmp_path):
    """drain_seconds (1.5) is shorter than slow-model's 3 s: neither answer has started then."""
    seeded = await seed_key(pool, models=["slow-model"])
    gateway = Gateway(tmp_path, env, {"drain_delay_seconds": 0.5, "drain_seconds": 1.5})
    sent = Sent()
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.start(http)
        async with sent.sdk(gateway.url, seeded.key) as sdk:
            calls = [asyncio.create_task(plain(sdk)), asyncio.create_task(streamed(sdk))]
            await eventually(lambda: sent.count == 2, timeout=15)
            gateway.terminate()
            signalled = time.monotonic()
            outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
            elapsed = time.monotonic() - signalled
        for outcome in outcomes:
            assert isinstance(outcome, openai.InternalServerError), outcome
            assert outcome.status_code == 503
            assert outcome.code == "SHUTTING_DOWN"
            assert outcome.body == SHUTTING_DOWN["error"]
            assert outcome.response.json() == SHUTTING_DOWN
            assert outcome.response.headers["retry-after"] == "1"
        assert elapsed >= 1.5 - 0.2, elapsed  # at drain_seconds, not at the signal or the delay's end
        assert await gateway.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        await gateway.stop()
    assert "draining; readiness is 503" in gateway.log.read_text()
