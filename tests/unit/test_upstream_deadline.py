"""Upstream's deadlines (asyncio.timeout()): running out is the gateway's timeout error,
someone else's cancellation (a client gone, a shutdown) stays a cancellation."""

import asyncio

import pytest

from gateway.config import LiteLLMConfig
from gateway.errors import UpstreamTimeoutError
from gateway.serving.breaker import UpstreamFailure
from gateway.serving.upstream import Upstream

pytestmark = pytest.mark.unit


class Forever:
    """An aiohttp session or response that never answers."""

    def __init__(self) -> None:
        self.waits = 0
        self.on_wait = None  # called as the wait begins

    async def request(self, *args, **kwargs):
        return await self.read()

    async def read(self):
        self.waits += 1
        if self.on_wait is not None:
            self.on_wait()
        await asyncio.get_running_loop().create_future()


def upstream(timeout_ms: int = 5000, request_timeout_seconds: float = 600) -> tuple[Upstream, Forever]:
    client = Upstream(LiteLLMConfig(url="http://litellm.invalid", timeout_ms=timeout_ms,
                                    request_timeout_seconds=request_timeout_seconds), breaker=None)  # type: ignore[arg-type]
    forever = Forever()
    client._session = forever  # type: ignore[assignment]
    return client, forever


async def test_a_generation_out_of_time_is_a_timeout_and_no_failure_of_litellm():
    client, forever = upstream()
    with pytest.raises(UpstreamTimeoutError) as caught:
        await client._send("POST", "/v1/chat/completions", {}, b"{}", 0.01, own=False)
    assert (caught.value.status, caught.value.code, forever.waits) == (504, "LITELLM_TIMEOUT", 1)
    assert caught.value.payload() == {"error": {
        "message": "The model service did not answer in time. Please try again later.",
        "type": caught.value.payload()["error"]["type"], "param": None, "code": "LITELLM_TIMEOUT"}}
    assert caught.value.retry_after == 1


async def test_the_gateways_own_call_out_of_time_is_litellms_failure():
    client, _ = upstream()
    with pytest.raises(UpstreamFailure) as caught:
        await client._send("GET", "/v1/models", {}, None, 0.01, own=True)
    assert caught.value.reason == "timeout"


async def test_reading_a_small_body_out_of_time_is_a_timeout():
    client, forever = upstream(timeout_ms=10)
    with pytest.raises(UpstreamTimeoutError) as caught:
        await client.read_body(forever)  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (504, "LITELLM_TIMEOUT")
    assert caught.value.message == "The model service did not answer in time. Please try again later. (reading LiteLLM's answer)"


async def test_an_answer_in_time_is_returned_and_its_deadline_cancelled():
    client, _ = upstream()

    class Answering:
        async def request(self, *args, **kwargs):
            return "response"

    client._session = Answering()  # type: ignore[assignment]
    assert await client._send("POST", "/v1/chat/completions", {}, b"{}", 0.01, own=False) == "response"
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.1, done.set_result, None)  # later than the deadline would have fired
    await done  # not cancelled: the deadline went with the answer


async def test_someone_elses_cancel_stays_a_cancel():
    client, forever = upstream()
    task = asyncio.ensure_future(client._send("POST", "/v1/chat/completions", {}, b"{}", 30, own=False))
    deadline = asyncio.get_running_loop().time() + 5
    while not forever.waits:  # the request is sent and waits
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_expiry_and_another_cancel_together_stay_a_cancel():
    client, forever = upstream()
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task] = []
    # A deadline of 0 is due at once: asyncio.timeout() queues its cancel with call_soon, before
    # the await; the outside cancel is queued after it, so both come before the task runs again.
    forever.on_wait = lambda: loop.call_soon(tasks[0].cancel)
    tasks.append(loop.create_task(client._send("POST", "/v1/chat/completions", {}, b"{}", 0, own=False)))
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert forever.waits == 1
