"""upstream.IdleWatch: a body LiteLLM leaves silent is ended after 1-1.25x the idle timeout.

The bounds are checked on a hand-moved clock (the watch's checks are driven by hand);
one test on the real Ticker shows they are wired, with margins a busy machine keeps."""

import asyncio

import aiohttp
import pytest

from gateway.serving.ticker import Ticker
from gateway.serving.upstream import IdleWatch

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


class HandLoop:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now


class HandTicker:
    """A Ticker whose checks run when the test says: set() only remembers the delay asked for."""

    def __init__(self) -> None:
        self.loop = HandLoop()
        self.delay: float | None = None

    def set(self, timed, delay: float) -> None:
        self.delay = delay

    def check(self, watch: IdleWatch) -> None:
        """Move the clock to the next check and run it."""
        assert self.delay is not None
        self.loop.now, self.delay = self.loop.now + self.delay, None
        watch.fire()


class HandResponse:
    def __init__(self) -> None:
        self.content = Content()
        self.closed_at: float | None = None
        self.clock: HandLoop | None = None

    def close(self) -> None:
        assert self.clock is not None
        self.closed_at = self.clock.now


def hand_watch(seconds: float) -> tuple[HandTicker, HandResponse, IdleWatch]:
    ticker, response = HandTicker(), HandResponse()
    response.clock = ticker.loop
    return ticker, response, IdleWatch(ticker, seconds, response)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0.2, 1.0, 30.0])
def test_a_silent_body_ends_between_one_and_one_and_a_quarter_timeouts(timeout):
    ticker, response, watch = hand_watch(timeout)
    started = ticker.loop.now
    while not watch.expired:
        ticker.check(watch)
    assert response.closed_at is not None
    assert timeout <= response.closed_at - started <= 1.25 * timeout
    assert isinstance(response.content.exception, aiohttp.ServerTimeoutError)
    assert isinstance(response.content.exception, TimeoutError)


def test_chunks_passed_on_keep_it_open_and_the_silence_counts_from_the_last():
    ticker, response, watch = hand_watch(0.2)
    for _ in range(40):  # a chunk just before each check: never 0.2 s of silence
        ticker.check(watch)
        watch.last = watch.clock()
    assert response.closed_at is None and not watch.expired
    last = watch.last
    ticker.loop.now += 0.01  # a chunk between two checks
    watch.last = watch.clock()
    while not watch.expired:
        ticker.check(watch)
    assert 0.2 <= response.closed_at - (last + 0.01) <= 0.25


async def test_on_the_real_ticker_a_silent_body_is_ended():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    watch = IdleWatch(Ticker(loop, TICK), 0.2, response)  # type: ignore[arg-type]
    started = loop.time()
    ended = await response.closed
    assert watch.expired
    assert 0.2 <= ended - started < 2.0, ended - started  # the exact bound is the hand-clock test's
    assert isinstance(response.content.exception, aiohttp.ServerTimeoutError)


async def test_stop_disarms_it():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    ticker = Ticker(loop, TICK)
    IdleWatch(ticker, 0.05, response).stop()  # type: ignore[arg-type]
    assert len(ticker) == 0
