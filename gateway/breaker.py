"""One circuit breaker per upstream target: aiobreaker plus an error-rate rule and a single trial.

    closed     calls go through. aiobreaker opens after `consecutive_failures` failures
               in a row; the listener here also opens it when failures reach
               `error_threshold_percent` of the calls in the last `window_seconds`
               (with at least `min_requests` calls: policies/error_rate.py).
    open       calls fail at once with UpstreamUnavailableError (503, Retry-After),
               without touching aiobreaker or the network, for `reset_timeout_seconds`.
    half-open  ONE trial call goes through; every other call fails fast until it
               ends (aiobreaker alone would let every concurrent call through).
               Success closes the breaker, failure opens it for another period.

Who makes the trial: the next request, or the health probe (gateway/health.py), so a
breaker closes by itself once LiteLLM answers again, even with no traffic.

A failure is what the guarded call raises as UpstreamFailure: connection errors,
timeouts, and 502/503/504 from LiteLLM (gateway/upstream.py decides). A 4xx or a
provider's 429 is an answer, so it counts as a success; so does any other exception
(a bug or a bad request of ours says nothing about LiteLLM's health).

The open period is timed with `clock` (monotonic), not with aiobreaker's
datetime.utcnow(): the gate in `call` decides, and moves aiobreaker to half-open itself.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any, Awaitable, Callable, NoReturn, TypeVar

import aiobreaker
from aiobreaker.state import CircuitBreakerState

from gateway.config import BreakerConfig
from gateway.errors import UpstreamUnavailableError
from gateway.metrics import BREAKER_STATE, BREAKER_TRANSITIONS
from policies.error_rate import ErrorRateWindow

log = logging.getLogger("maas_gateway.breaker")

T = TypeVar("T")

_CLOSED = CircuitBreakerState.CLOSED
_OPEN = CircuitBreakerState.OPEN
_HALF_OPEN = CircuitBreakerState.HALF_OPEN
NAMES = {_CLOSED: "closed", _OPEN: "open", _HALF_OPEN: "half-open"}
STATE_VALUES = {"closed": 0, "open": 1, "half-open": 2}  # the gauge's values


class UpstreamFailure(Exception):
    """Raised inside a guarded call to count it as a failure; `result` is kept for the caller."""

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


def _not_a_failure(exc: Exception) -> bool:
    return not isinstance(exc, UpstreamFailure)


class _Listener(aiobreaker.CircuitBreakerListener):
    def __init__(self, owner: "Breaker") -> None:
        self._owner = owner

    def failure(self, breaker: aiobreaker.CircuitBreaker, exception: Exception) -> None:
        self._owner._record(failed=True)

    def success(self, breaker: aiobreaker.CircuitBreaker) -> None:
        self._owner._record(failed=False)

    def state_change(self, breaker: aiobreaker.CircuitBreaker, old: Any, new: Any) -> None:
        old_name = NAMES.get(getattr(old, "state", None), "closed")
        self._owner._on_transition(old_name, NAMES[new.state])


class Breaker:
    def __init__(self, target: str, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self._clock = clock
        self._open_until = 0.0  # clock time when a trial may go through; meaningful while not closed
        self._trial = False  # a trial call is in flight
        # The hot path's view of aiobreaker's state (kept by _on_transition; reading aiobreaker's
        # is three property calls), and whether its failure counter may be non-zero.
        self._closed = True
        self._counting = False
        self._window: ErrorRateWindow | None = None
        self._gauge = BREAKER_STATE.labels(target=target)
        self._gauge.set(0)
        self._breaker = aiobreaker.CircuitBreaker(
            fail_max=max(1, config.consecutive_failures),
            timeout_duration=timedelta(seconds=config.reset_timeout_seconds),
            exclude=[_not_a_failure],
            listeners=[_Listener(self)],
            name=target,
        )
        self.configure(config)

    def configure(self, config: BreakerConfig) -> None:
        """Apply new settings (config reload) without losing the current state."""
        old = getattr(self, "config", None)
        self.config = config
        if self._window is None or old is None or old.window_seconds != config.window_seconds:
            self._window = ErrorRateWindow(config.window_seconds)
        self._breaker.fail_max = max(1, config.consecutive_failures)
        self._breaker.timeout_duration = timedelta(seconds=config.reset_timeout_seconds)
        if old is not None and self._breaker.current_state is _OPEN:
            self._open_until += config.reset_timeout_seconds - old.reset_timeout_seconds

    @property
    def state(self) -> str:
        """closed | open | half-open"""
        return NAMES[self._breaker.current_state]

    def trial_due(self) -> bool:
        """True when the breaker is not closed and the next call would be its trial."""
        return self._breaker.current_state is not _CLOSED and not self._trial and self._clock() >= self._open_until

    def retry_after(self) -> int:
        """Whole seconds until a trial call may be let through (at least 1)."""
        if self._breaker.current_state is _CLOSED:
            return 1
        return max(1, math.ceil(self._open_until - self._clock()))

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run func through the breaker; UpstreamUnavailableError at once while it is open.

        A failure (UpstreamFailure) is re-raised as it is, also the one that opens the breaker.
        """
        if self._closed:
            try:
                result = await func(*args)
            except UpstreamFailure as failure:
                self.failed_while_closed(func, failure)
            if self._counting:
                self._counting = False
                self._breaker._state_storage.reset_counter()  # consecutive failures end with a success
            self._window.record(self._clock(), False)  # type: ignore[union-attr]
            return result
        self._counting = True
        if self._trial or self._clock() < self._open_until:
            raise UpstreamUnavailableError(retry_after=self.retry_after())
        self._trial = True  # no await since the check: no other call can get here too
        try:
            if self._breaker.current_state is _OPEN:
                self._breaker.half_open()
            return await self._breaker.call_async(func, *args)
        except aiobreaker.CircuitBreakerError as exc:
            raise self._failure(exc)  # its chain is set in _failure
        finally:
            self._trial = False

    # The hot path. aiobreaker's call_async costs several property reads, listener loops and
    # a storage reset per call (measured: ~6% of a proxied request); while closed, call()
    # makes the call itself (a success: the counter reset and the window's count, as the
    # listener's success() would) and only a failure goes through aiobreaker's own error
    # handling (counter, listeners, opening), exactly as call_async would.

    def failed_while_closed(self, func: Callable[..., Any], failure: UpstreamFailure) -> NoReturn:
        """Count the failure (it may open the breaker); raises it, or what the caller sees when it opened."""
        self._counting = True
        try:
            self._breaker.state._handle_error(func, failure)  # always raises
        except aiobreaker.CircuitBreakerError as exc:
            raise self._failure(exc)  # its chain is set in _failure
        raise failure  # pragma: no cover - _handle_error re-raised `failure` above

    def _failure(self, exc: aiobreaker.CircuitBreakerError) -> Exception:
        """What the caller sees when aiobreaker reports the breaker open."""
        cause = exc.__cause__
        if isinstance(cause, UpstreamFailure):
            return cause  # this call failed and opened the breaker: the caller sees its own failure
        error = UpstreamUnavailableError(retry_after=self.retry_after())
        error.__cause__ = exc
        return error

    def _record(self, failed: bool) -> None:
        now = self._clock()
        window = self._window
        assert window is not None
        window.record(now, failed)
        if (
            failed
            and self._breaker.current_state is _CLOSED
            and window.should_trip(now, self.config.error_threshold_percent, self.config.min_requests)
        ):
            calls, failures = window.counts(now)
            log.warning(
                "breaker %s: %d of %d calls failed in %.0fs, opening",
                self.target, failures, calls, self.config.window_seconds,
                extra={"fields": {"target": self.target, "calls": calls, "failures": failures}},
            )
            self._breaker.open()

    def _on_transition(self, old: str, new: str) -> None:
        self._closed = new == "closed"
        if new == "open":
            # also on open -> open (a late failure re-opens): the period restarts, as in aiobreaker
            self._open_until = self._clock() + self.config.reset_timeout_seconds
        if old == new:
            return
        level = logging.INFO if new == "closed" else logging.WARNING
        log.log(level, "breaker %s: %s -> %s", self.target, old, new,
                extra={"fields": {"target": self.target, "from_state": old, "to_state": new}})
        self._gauge.set(STATE_VALUES[new])
        BREAKER_TRANSITIONS.labels(target=self.target, from_state=old, to_state=new).inc()
        if new == "closed":
            assert self._window is not None
            self._window.reset()
