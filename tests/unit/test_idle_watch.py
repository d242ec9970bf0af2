"""upstream.IdleWatch: a body LiteLLM leaves silent is ended once the silence lasts the idle timeout.

The bounds are checked on a hand-moved clock (the loop's timers are run by hand); tests on
the real loop show they are wired, with margins a busy machine keeps."""

import asyncio
import gc
import weakref

import aiohttp
import pytest

from gateway.serving.upstream import IdleWatch

pytestmark = pytest.mark.unit


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
    """A loop whose one timer runs when the test says: call_at() only remembers it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timer: tuple[float, object] | None = None

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback) -> "HandLoop":
        assert self.timer is None, "one timer at a time"
        self.timer = (when, callback)
        return self  # the handle: cancel() drops the timer

    def cancel(self) -> None:
        self.timer = None

    def run_timer(self) -> None:
        """Move the clock to the timer's moment and run it."""
        assert self.timer is not None
        (self.now, callback), self.timer = self.timer, None
        callback()  # type: ignore[operator]


class HandResponse:
    def __init__(self, loop: HandLoop) -> None:
        self.content = Content()
        self.closed_at: float | None = None
        self.clock = loop

    def close(self) -> None:
        self.closed_at = self.clock.now


def hand_watch(seconds: float) -> tuple[HandLoop, HandResponse, IdleWatch]:
    loop = HandLoop()
    response = HandResponse(loop)
    return loop, response, IdleWatch(loop, seconds, response)  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0.2, 1.0, 30.0])
def test_a_silent_body_ends_when_the_silence_lasts_the_timeout(timeout):
    loop, response, watch = hand_watch(timeout)
    started = loop.now
    loop.run_timer()
    assert watch.expired and loop.timer is None
    assert response.closed_at == started + timeout
    assert isinstance(response.content.exception, aiohttp.ServerTimeoutError)
    assert isinstance(response.content.exception, TimeoutError)


def test_chunks_passed_on_keep_it_open_and_the_silence_counts_from_the_last():
    loop, response, watch = hand_watch(0.2)
    for _ in range(40):  # a chunk 0.15 s after each look: never 0.2 s of silence
        loop.now += 0.15
        watch.last = watch.clock()
        loop.run_timer()
    assert response.closed_at is None and not watch.expired
    last = watch.last
    loop.run_timer()  # the next look: nothing came since `last`
    assert watch.expired and response.closed_at == pytest.approx(last + 0.2)


async def test_on_the_real_loop_a_silent_body_is_ended():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    watch = IdleWatch(loop, 0.2, response)  # type: ignore[arg-type]
    started = loop.time()
    ended = await response.closed
    assert watch.expired
    assert 0.2 <= ended - started < 2.0, ended - started  # the exact bound is the hand-clock test's
    assert isinstance(response.content.exception, aiohttp.ServerTimeoutError)


class Watch(IdleWatch):
    __slots__ = ("__weakref__",)


async def test_stop_cancels_it_and_leaves_no_cycle():
    loop = asyncio.get_running_loop()
    response = Response(loop)
    gc.disable()  # freed by reference counting alone, or not at all
    try:
        watch = Watch(loop, 0.05, response)  # type: ignore[arg-type]
        watch.stop()
        watch.stop()  # harmless twice
        ref = weakref.ref(watch)
        del watch
        assert ref() is None
    finally:
        gc.enable()
    done = loop.create_future()
    loop.call_later(0.2, done.set_result, None)  # well past the timeout it had
    await done
    assert not response.closed.done() and response.content.exception is None
