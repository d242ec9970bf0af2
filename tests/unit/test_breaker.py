"""gateway/serving/breaker.py: the state machine on a clock, guarded calls, the single half-open trial.

No network: the guarded calls are coroutines that succeed, fail (UpstreamFailure) or
wait on an event; time is a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gateway.serving.breaker import Breaker, UpstreamFailure
from gateway.config import BreakerConfig
from gateway.errors import UpstreamUnavailableError
from gateway.ops.metrics import BREAKER_STATE, BREAKER_TRANSITIONS

pytestmark = pytest.mark.unit

_names = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **settings) -> Breaker:
    defaults = {"consecutive_failures": 3, "min_requests": 1000, "reset_timeout_seconds": 30.0}
    return Breaker(f"test-{next(_names)}", BreakerConfig(**{**defaults, **settings}), clock=clock)


class Upstream:
    """A guarded call's target: counts calls, fails on demand, can be held open."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise UpstreamFailure("LiteLLM unreachable")
        return value


async def fail(breaker: Breaker, upstream: Upstream) -> None:
    upstream.failing = True
    with pytest.raises(UpstreamFailure):
        await breaker.call(upstream)
    upstream.failing = False


def transitions(breaker: Breaker, old: str, new: str) -> float:
    return BREAKER_TRANSITIONS.labels(target=breaker.target, from_state=old, to_state=new)._value.get()


def gauge(breaker: Breaker) -> float:
    return BREAKER_STATE.labels(target=breaker.target)._value.get()


async def test_consecutive_failures_open_it_and_open_fails_fast_without_calling() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock)
    assert await breaker.call(upstream, "a") == "a"
    for _ in range(3):
        await fail(breaker, upstream)  # the failure that opens it is reported as itself
    assert breaker.state == "open"
    assert (gauge(breaker), transitions(breaker, "closed", "open")) == (1, 1)
    calls = upstream.calls
    clock.now += 10
    with pytest.raises(UpstreamUnavailableError) as caught:
        await breaker.call(upstream)
    assert upstream.calls == calls
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "LITELLM_UNAVAILABLE", 20)
    assert caught.value.message == "Service temporarily unavailable. Please try again later."


async def test_a_success_resets_the_consecutive_count() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock)
    for _ in range(5):
        await fail(breaker, upstream)
        await fail(breaker, upstream)
        await breaker.call(upstream)
    assert breaker.state == "closed"


async def test_error_rate_over_the_window_opens_it() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock, consecutive_failures=100, min_requests=10, error_threshold_percent=50, window_seconds=10)
    for i in range(4):  # 4 failures in 8 calls: too few calls to judge
        await breaker.call(upstream)
        await fail(breaker, upstream)
        clock.now += 1
    assert breaker.state == "closed"
    await breaker.call(upstream)
    await fail(breaker, upstream)  # 5 of 10
    assert breaker.state == "open"


async def test_error_rate_below_the_threshold_keeps_it_closed() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock, consecutive_failures=100, min_requests=10, error_threshold_percent=50, window_seconds=10)
    for _ in range(30):
        await breaker.call(upstream)
        await breaker.call(upstream)
        await fail(breaker, upstream)  # one in three
        clock.now += 0.5
    assert breaker.state == "closed"


async def test_old_failures_leave_the_window() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock, consecutive_failures=100, min_requests=4, error_threshold_percent=50, window_seconds=5)
    await fail(breaker, upstream)
    await breaker.call(upstream)
    clock.now += 10
    await breaker.call(upstream)
    await breaker.call(upstream)
    await breaker.call(upstream)
    await fail(breaker, upstream)  # 1 of 4 in the window; 2 of 6 ever
    assert breaker.state == "closed"


async def test_other_exceptions_are_not_failures() -> None:
    clock = Clock()
    breaker = make(clock, consecutive_failures=1)

    async def buggy() -> None:
        raise ValueError("a bug of ours, not LiteLLM's")

    for _ in range(3):
        with pytest.raises(ValueError):
            await breaker.call(buggy)
    assert breaker.state == "closed"


async def test_after_the_reset_timeout_one_trial_goes_through_and_success_closes() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock)
    for _ in range(3):
        await fail(breaker, upstream)
    assert not breaker.trial_due()
    clock.now += 30
    assert breaker.trial_due()
    upstream.gate = asyncio.Event()
    trial = asyncio.create_task(breaker.call(upstream, "trial"))
    await asyncio.sleep(0)
    assert breaker.state == "half-open" and upstream.calls == 4
    assert not breaker.trial_due()
    for _ in range(20):  # concurrent calls do not pile onto a recovering LiteLLM
        with pytest.raises(UpstreamUnavailableError) as caught:
            await breaker.call(upstream)
        assert caught.value.retry_after == 1
    assert upstream.calls == 4
    upstream.gate.set()
    assert await trial == "trial"
    assert breaker.state == "closed" and gauge(breaker) == 0
    assert [transitions(breaker, *t) for t in (("open", "half-open"), ("half-open", "closed"))] == [1, 1]
    upstream.gate = None
    assert await breaker.call(upstream, "after") == "after"


async def test_a_failed_trial_opens_it_for_another_period() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock, reset_timeout_seconds=5)
    for _ in range(3):
        await fail(breaker, upstream)
    clock.now += 5
    await fail(breaker, upstream)  # the trial
    assert breaker.state == "open"
    assert transitions(breaker, "half-open", "open") == 1
    clock.now += 4.5
    with pytest.raises(UpstreamUnavailableError) as caught:
        await breaker.call(upstream)
    assert caught.value.retry_after == 1
    clock.now += 0.5
    assert await breaker.call(upstream, "back") == "back"
    assert breaker.state == "closed"


async def test_a_cancelled_trial_lets_the_next_call_try() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock)
    for _ in range(3):
        await fail(breaker, upstream)
    clock.now += 30
    upstream.gate = asyncio.Event()
    trial = asyncio.create_task(breaker.call(upstream))
    await asyncio.sleep(0)
    trial.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert breaker.state == "half-open" and breaker.trial_due()
    upstream.gate = None
    assert await breaker.call(upstream, "second trial") == "second trial"
    assert breaker.state == "closed"


async def test_configure_keeps_the_state_and_moves_the_reopen_time() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock, reset_timeout_seconds=30)
    for _ in range(3):
        await fail(breaker, upstream)
    breaker.configure(BreakerConfig(consecutive_failures=1, min_requests=1000, reset_timeout_seconds=2))
    assert breaker.state == "open" and breaker.retry_after() == 2
    clock.now += 2
    await fail(breaker, upstream)  # trial fails: open again, for the new period
    assert breaker.retry_after() == 2
    clock.now += 2
    await breaker.call(upstream)
    await fail(breaker, upstream)  # one failure is now enough
    assert breaker.state == "open"


async def test_closing_forgets_the_window() -> None:
    clock, upstream = Clock(), Upstream()
    breaker = make(clock, consecutive_failures=100, min_requests=4, error_threshold_percent=50, reset_timeout_seconds=1)
    for _ in range(2):
        await breaker.call(upstream)
        await fail(breaker, upstream)
    assert breaker.state == "open"
    clock.now += 1.5
    await breaker.call(upstream)
    assert breaker.state == "closed"
    await fail(breaker, upstream)  # 1 of 2 since closing: too few calls to judge again
    assert breaker.state == "closed"
