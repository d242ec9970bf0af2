"""One circuit breaker per upstream target: aiobreaker plus an error-rate rule.

aiobreaker opens after `consecutive_failures` failures in a row; the listener here
also opens it when failures reach `error_threshold_percent` of the calls in the
last `window_seconds` (with at least `min_requests` calls). After
`reset_timeout_seconds` one trial call is let through (half-open): success closes
the breaker, failure opens it again.

A failure is what the guarded call raises as UpstreamFailure: connection errors,
timeouts, and 502/503/504 from LiteLLM. 4xx and a provider's 429 are successes here.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, TypeVar

import aiobreaker

from gateway.config import BreakerConfig
from gateway.errors import UpstreamUnavailableError
from gateway.metrics import BREAKER_STATE, BREAKER_TRANSITIONS
from policies.error_rate import ErrorRateWindow

log = logging.getLogger("maas_gateway.breaker")

T = TypeVar("T")

_STATE_VALUES = {"closed": 0, "open": 1, "half-open": 2}


class UpstreamFailure(Exception):
    """Raised inside a guarded call to count it as a failure; `result` is kept for the caller."""

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


class _Listener(aiobreaker.CircuitBreakerListener):
    def __init__(self, owner: "Breaker") -> None:
        self._owner = owner

    def failure(self, breaker: aiobreaker.CircuitBreaker, exception: Exception) -> None:
        self._owner._record(failed=True)

    def success(self, breaker: aiobreaker.CircuitBreaker) -> None:
        self._owner._record(failed=False)

    def state_change(self, breaker: aiobreaker.CircuitBreaker, old: Any, new: Any) -> None:
        old_name = getattr(getattr(old, "state", None), "value", "closed")
        new_name = new.state.value
        self._owner._on_transition(old_name, new_name)


class Breaker:
    def __init__(self, target: str, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self._clock = clock
        self._gauge = BREAKER_STATE.labels(target=target)
        self._gauge.set(0)
        self._breaker = aiobreaker.CircuitBreaker(
            fail_max=max(1, config.consecutive_failures),
            timeout_duration=timedelta(seconds=config.reset_timeout_seconds),
            listeners=[_Listener(self)],
            name=target,
        )
        self.configure(config)

    def configure(self, config: BreakerConfig) -> None:
        """Apply new settings (config reload) without losing the current state."""
        self.config = config
        self._window = ErrorRateWindow(config.window_seconds)
        self._breaker.fail_max = max(1, config.consecutive_failures)
        self._breaker.timeout_duration = timedelta(seconds=config.reset_timeout_seconds)

    @property
    def state(self) -> str:
        return self._breaker.current_state.value

    def retry_after(self) -> int:
        """Whole seconds until a trial call will be let through (at least 1)."""
        opened = self._breaker._state_storage.opened_at
        if opened is None:
            return 1
        remaining = (opened + self._breaker.timeout_duration - datetime.utcnow()).total_seconds()
        return max(1, math.ceil(remaining))

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run func through the breaker; UpstreamUnavailableError when the breaker is open."""
        try:
            return await self._breaker.call_async(func, *args)
        except aiobreaker.CircuitBreakerError as exc:
            cause = exc.__cause__
            if isinstance(cause, UpstreamFailure):
                raise cause  # the trial call failed: the caller handles it like any failure
            raise UpstreamUnavailableError(detail="circuit open", retry_after=self.retry_after()) from exc

    def _record(self, failed: bool) -> None:
        now = self._clock()
        self._window.record(now, failed)
        if (
            failed
            and self.state == "closed"
            and self._window.should_trip(now, self.config.error_threshold_percent, self.config.min_requests)
        ):
            log.warning("breaker %s: error rate over %.0f%%, opening", self.target, self.config.error_threshold_percent)
            self._breaker.open()

    def _on_transition(self, old: str, new: str) -> None:
        if old == new:
            return
        log.warning("breaker %s: %s -> %s", self.target, old, new)
        self._gauge.set(_STATE_VALUES.get(new, 0))
        BREAKER_TRANSITIONS.labels(target=self.target, from_state=old, to_state=new).inc()
        if new == "closed":
            self._window.reset()
