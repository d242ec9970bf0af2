"""Ticker: many timeouts on one loop timer, each fired once, in order, never early."""

import asyncio
import gc
import weakref

import pytest

from gateway.serving.ticker import Ticker, Timed

pytestmark = pytest.mark.unit

TICK = 0.005


async def until(loop: asyncio.AbstractEventLoop, seconds: float) -> None:
    done = loop.create_future()
    loop.call_later(seconds, done.set_result, None)
    await done


class Note(Timed):
    """A timeout that notes its name (and how late it fired) when it fires."""

    __slots__ = ("name", "fired", "action", "__weakref__")

    def __init__(self, name: str, fired: list, action=None) -> None:
        self.name, self.fired, self.action = name, fired, action

    def fire(self) -> None:
        self.fired.append(self.name)
        if self.action is not None:
            self.action(self)


async def test_timeouts_fire_once_in_order_and_not_before_their_time():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[str] = []
    lateness: dict[str, float] = {}
    start = loop.time()
    for name, delay in (("b", 0.03), ("a", 0.01), ("c", 0.03), ("d", 0.02)):
        ticker.set(Note(name, fired, lambda note, d=delay: lateness.__setitem__(note.name, loop.time() - start - d)), delay)
    await until(loop, 0.2)
    assert fired == ["a", "d", "b", "c"]
    assert all(late >= 0 for late in lateness.values()), lateness
    assert len(ticker) == 0


async def test_a_disarmed_timeout_never_fires_and_disarm_twice_is_harmless():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[str] = []
    kept, dropped = Note("kept", fired), Note("dropped", fired)
    ticker.set(kept, 0.01)
    ticker.set(dropped, 0.01)
    dropped.disarm()
    dropped.disarm()
    assert len(ticker) == 1
    await until(loop, 0.1)
    kept.disarm()  # after it fired
    assert fired == ["kept"]


async def test_no_loop_timer_while_nothing_waits():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    assert ticker._timer is None
    note = Note("n", [])
    ticker.set(note, 0.01)
    note.disarm()
    await until(loop, 0.05)  # one tick finds nothing and does not re-arm
    assert ticker._timer is None


async def test_a_failing_timeout_is_reported_and_the_others_still_run():
    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        ticker = Ticker(loop, TICK)
        fired: list[str] = []
        ticker.set(Note("failing", fired, lambda note: 1 / 0), 0.01)
        ticker.set(Note("after", fired), 0.01)
        await until(loop, 0.1)
    finally:
        loop.set_exception_handler(None)
    assert fired == ["failing", "after"]
    assert isinstance(reported[0]["exception"], ZeroDivisionError)


async def test_a_timeout_may_be_set_again_when_it_fires():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[str] = []

    def again(note: Note) -> None:
        if len(fired) < 3:
            ticker.set(note, 0.01)

    ticker.set(Note("n", fired, again), 0.01)
    await until(loop, 0.3)
    assert fired == ["n", "n", "n"]
    assert len(ticker) == 0


async def test_close_drops_every_timeout():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    fired: list[str] = []
    note = Note("n", fired)
    ticker.set(note, 0.01)
    ticker.close()
    note.disarm()  # harmless after close
    await until(loop, 0.05)
    assert fired == [] and len(ticker) == 0 and ticker._timer is None


async def test_nothing_refers_to_a_timed_object_once_fired_or_disarmed():
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, TICK)
    gc.disable()  # freed by reference counting alone, or not at all
    try:
        disarmed, fired = Note("disarmed", []), Note("fired", [])
        ticker.set(disarmed, 30)
        disarmed.disarm()
        ticker.set(fired, 0.01)
        await until(loop, 0.1)
        assert fired.fired == ["fired"]
        refs = [weakref.ref(disarmed), weakref.ref(fired)]
        del disarmed, fired
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()
