"""A circuit breaker's rules as a state machine; time and outcomes are arguments, as in h11.

    closed     every call goes through (PASS). Each outcome is recorded; the breaker opens
               when `consecutive_failures` calls in a row failed, or when failures reach
               `error_threshold_percent` of at least `min_requests` calls in the last
               `window_seconds` (policies/error_rate.py) -- and, either way, the window's
               failures came from at least `min_keys` distinct callers, so one key holder
               cannot open a breaker that serves everybody.
    open       every call is refused (REFUSE) until `reset_timeout_seconds` have passed.
    half-open  then ONE call is the trial (TRIAL); the others are refused while it runs.
               Its success closes the breaker, its failure opens it for another period;
               a trial that ends with no verdict (cancelled, a slow generation) frees the
               place for the next one.

An outcome of a call admitted while closed that arrives after the breaker opened says
nothing new and is dropped. The caller reads `state` before and after a step to see a
transition (gateway/serving/breaker.py logs and counts them).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from policies.error_rate import ErrorRateWindow

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class Admit(enum.Enum):
    PASS = "pass"
    TRIAL = "trial"
    REFUSE = "refuse"


@dataclass(frozen=True)
class BreakerRule:
    """A breaker's numbers, and the one place their defaults live: config.yaml's `breaker:`
    section takes them from here and builds the rule (gateway/config/sections.py, BreakerConfig.rule)."""

    consecutive_failures: int = 5
    error_threshold_percent: float = 50.0
    min_requests: int = 20
    window_seconds: float = 10.0
    reset_timeout_seconds: float = 30.0
    min_keys: int = 1  # distinct callers among the window's failures needed to open


class BreakerMachine:
    """One breaker's state. Not thread-safe; every method runs to its end without waiting."""

    __slots__ = ("rule", "state", "open_until", "trial", "_consecutive", "_window", "_failing")

    def __init__(self, rule: BreakerRule) -> None:
        self.rule = rule
        self.state = CLOSED
        self.open_until = 0.0  # when a trial may go through; meaningful while not closed
        self.trial = False  # a trial call is running
        self._consecutive = 0
        self._window = ErrorRateWindow(rule.window_seconds)
        self._failing: dict[str, float] = {}  # caller -> time of its last failure

    def admit(self, now: float) -> Admit:
        if self.state is CLOSED:
            return Admit.PASS
        if self.trial or now < self.open_until:
            return Admit.REFUSE
        self.trial = True
        self.state = HALF_OPEN
        return Admit.TRIAL

    def succeeded(self, now: float, trial: bool = False) -> None:
        if trial:
            self.trial = False
            self._close()
        elif self.state is CLOSED:
            self._consecutive = 0
            self._window.record(now, False)

    def failed(self, now: float, trial: bool = False, caller: str = "") -> None:
        if trial:
            self.trial = False
            self._open(now)
            return
        if self.state is not CLOSED:
            return
        self._consecutive += 1
        self._window.record(now, True)
        self._failing[caller] = now
        rule = self.rule
        tripped = self._consecutive >= max(1, rule.consecutive_failures) or self._window.should_trip(
            now, rule.error_threshold_percent, rule.min_requests
        )
        if tripped and self.callers(now) >= rule.min_keys:
            self._open(now)

    def released(self, trial: bool) -> None:
        """A call ended without a verdict; a trial's place is free again."""
        if trial:
            self.trial = False

    def callers(self, now: float) -> int:
        """Distinct callers with a failure in the window ending at `now` (older ones are forgotten)."""
        oldest = now - self.rule.window_seconds
        stale = [caller for caller, at in self._failing.items() if at < oldest]
        for caller in stale:
            del self._failing[caller]
        return len(self._failing)

    def counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) in the window ending at `now`."""
        return self._window.counts(now)

    def trial_due(self, now: float) -> bool:
        return self.state is not CLOSED and not self.trial and now >= self.open_until

    def retry_after(self, now: float) -> int:
        """Whole seconds until a trial may go through (at least 1)."""
        if self.state is CLOSED:
            return 1
        return max(1, math.ceil(self.open_until - now))

    def configure(self, rule: BreakerRule) -> None:
        """New settings, the state kept; an open period is moved by the change of its length."""
        old = self.rule
        self.rule = rule
        if rule.window_seconds != old.window_seconds:
            self._window = ErrorRateWindow(rule.window_seconds)
        if self.state is not CLOSED:
            self.open_until += rule.reset_timeout_seconds - old.reset_timeout_seconds

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.open_until = now + self.rule.reset_timeout_seconds

    def _close(self) -> None:
        self.state = CLOSED
        self._consecutive = 0
        self._window.reset()
        self._failing.clear()
