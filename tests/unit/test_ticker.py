"""Ticker: many timeouts on one loop timer, each fired once, in order, never early."""

import asyncio
import gc
import weakref

import pytest

from gateway.ticker import Ticker

pytestmark = pytest.mark.unit

TICK = 0.005


async def until(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    done = loop.create_future()
    loop.call_later(seconds, done.set_result, None)
    await done


async def test_timeouts_fire_once_in_order_and_not_before_their_time():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[tuple[str, float]] = []
    start = loop.time()
    for name, delay in (("b", 0.03), ("a", 0.01), ("c", 0.03), ("d", 0.02)):
        ticker.call_later(delay, lambda n, d: fired.append((n, loop.time() - start - d)), name, delay)
    await until(loop, 0.2)
    assert [name for name, _ in fired] == ["a", "d", "b", "c"]
    assert all(late >= 0 for _, late in fired), fired
    assert len(ticker) == 0


async def test_a_cancelled_timeout_never_fires_and_cancel_twice_is_harmless():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[str] = []
    kept = ticker.call_later(0.01, fired.append, "kept")
    dropped = ticker.call_later(0.01, fired.append, "dropped")
    dropped.cancel()
    dropped.cancel()
    assert len(ticker) == 1
    await until(loop, 0.1)
    kept.cancel()  # after it fired
    assert fired == ["kept"]


async def test_no_loop_timer_while_nothing_waits():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    assert ticker._timer is None
    ticker.call_later(0.01, lambda: None).cancel()
    await until(loop, 0.05)  # one tick finds nothing and does not re-arm
    assert ticker._timer is None


async def test_a_failing_callback_is_reported_and_the_others_still_run():
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        ticker = Ticker(loop, TICK)
        fired: list[str] = []
        ticker.call_later(0.01, lambda: 1 / 0)
        ticker.call_later(0.01, fired.append, "after")
        await until(loop, 0.1)
    finally:
        loop.set_exception_handler(None)
    assert fired == ["after"]
    assert isinstance(reported[0]["exception"], ZeroDivisionError)


async def test_a_callback_may_set_the_next_timeout():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[int] = []

    def again(n: int) -> None:
        fired.append(n)
        if n < 3:
            ticker.call_later(0.01, again, n + 1)

    ticker.call_later(0.01, again, 1)
    await until(loop, 0.3)
    assert fired == [1, 2, 3]


class Holder:
    """Holds its timeout, whose callback is its own method: a reference cycle while armed."""

    def __init__(self, ticker: Ticker, delay: float) -> None:
        self.timeout = ticker.call_later(delay, self.fire)
        self.fired = False

    def fire(self) -> None:
        self.fired = True


async def test_a_timeout_lets_go_of_its_callback_once_cancelled_or_fired():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    gc.disable()  # freed by reference counting alone, or not at all
    try:
        cancelled = Holder(ticker, 30)
        cancelled.timeout.cancel()
        fired = Holder(ticker, 0.01)
        await until(loop, 0.1)
        assert fired.fired
        refs = [weakref.ref(cancelled), weakref.ref(fired)]
        del cancelled, fired
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()
