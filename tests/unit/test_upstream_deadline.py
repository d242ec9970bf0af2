"""upstream._Deadline: asyncio.timeout()'s rule for the one await on LiteLLM's headers."""

import asyncio

import pytest

from gateway.serving.ticker import Ticker
from gateway.serving.upstream import _Deadline

pytestmark = pytest.mark.unit
TICK = 0.005


async def wait_under(deadline_s: float, outside_cancel_after: float | None = None) -> str:
    loop = asyncio.get_running_loop()
    forever = loop.create_future()

    async def guarded() -> str:
        deadline = _Deadline(Ticker(loop, TICK), deadline_s)
        try:
            await forever
        except asyncio.CancelledError:
            if deadline.stop(cancelled=True):
                return "timeout"
            raise
        deadline.stop(cancelled=False)
        return "answered"

    task = loop.create_task(guarded())
    if outside_cancel_after is not None:
        loop.call_later(outside_cancel_after, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


async def test_an_expired_deadline_is_a_timeout():
    assert await wait_under(0.01) == "timeout"


async def test_someone_elses_cancel_stays_a_cancel():
    assert await wait_under(30, outside_cancel_after=0.01) == "cancelled"


async def test_an_expiry_and_another_cancel_together_stay_a_cancel():
    loop = asyncio.get_running_loop()
    waiting, forever = loop.create_future(), loop.create_future()
    deadlines: list[_Deadline] = []

    async def guarded() -> str:
        deadlines.append(_Deadline(Ticker(loop, TICK), 30))
        waiting.set_result(None)
        try:
            await forever
        except asyncio.CancelledError:
            return "timeout" if deadlines[0].stop(cancelled=True) else "cancelled"
        return "answered"

    task = loop.create_task(guarded())
    await waiting  # guarded() is now suspended on `forever`
    deadlines[0].fire()  # the deadline fires, and before the task runs again
    task.cancel()  # someone else cancels too: as with asyncio.timeout(), that cancel wins
    assert await task == "cancelled"


async def test_an_answer_in_time_disarms_it():
    loop = asyncio.get_running_loop()
    deadline = _Deadline(Ticker(loop, TICK), 0.01)
    assert deadline.stop(cancelled=False) is False
    done = loop.create_future()
    loop.call_later(0.05, done.set_result, None)  # later than the deadline would have fired
    await done  # not cancelled: the deadline was disarmed
