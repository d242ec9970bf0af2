"""upstream.IdleWatch: a body LiteLLM leaves silent is ended after 1-1.25x the idle timeout."""

import asyncio

import aiohttp
import pytest

from gateway.ticker import Ticker
from gateway.upstream import IdleWatch

pytestmark = pytest.mark.unit

TICK = 0.005


class Content:
    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def set_exception(self, exc: BaseException) -> None:
        self.exception = exc


class Response:
    """The two parts of aiohttp.ClientResponse the watch uses."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.content = Content()
        self.closed = loop.create_future()

    def close(self) -> None:
        self.closed.set_result(asyncio.get_running_loop().time())


async def test_a_silent_body_ends_between_one_and_one_and_a_quarter_timeouts():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    watch = IdleWatch(Ticker(loop, TICK), 0.2, response)  # type: ignore[arg-type]
    started = loop.time()
    ended = await response.closed
    assert watch.expired
    assert 0.2 <= ended - started <= 0.25 + 2 * TICK + 0.05, ended - started
    assert isinstance(response.content.exception, aiohttp.ServerTimeoutError)
    assert isinstance(response.content.exception, TimeoutError)


async def test_chunks_passed_on_keep_it_open():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    watch = IdleWatch(Ticker(loop, TICK), 0.2, response)  # type: ignore[arg-type]
    started = loop.time()
    for _ in range(8):  # a chunk every 0.1 s for 0.8 s: never 0.2 s of silence
        pause = loop.create_future()
        loop.call_later(0.1, pause.set_result, None)
        await pause
        watch.last = watch.clock()
    assert not response.closed.done() and not watch.expired
    ended = await response.closed  # then silence
    assert ended - started >= 0.8 + 0.2


async def test_stop_disarms_it():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    ticker = Ticker(loop, TICK)
    IdleWatch(ticker, 0.05, response).stop()  # type: ignore[arg-type]
    assert len(ticker) == 0
