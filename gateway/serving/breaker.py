"""Circuit breakers: policies/breaker.py's state machine, run on the clock, logged and counted.

Two kinds (design, "Running it"):
    litellm          LiteLLM as a whole. Counts only LiteLLM's own failures: unreachable
                     (connection refused or reset, connect timeout), a timeout of the
                     gateway's own calls, its own 502/503/504 (gateway/serving/upstream.py decides).
                     Open: 503 LITELLM_UNAVAILABLE for everything.
    model:<name>     one per model the gateway knows (state.known_models, so the metric's
                     `target` label stays bounded). Counts that model's 5xx answers (LiteLLM
                     relays a provider's failure as a 5xx) and opens only when the failures
                     came from at least `breaker.min_distinct_keys` keys. Open: 503
                     MODEL_UNAVAILABLE for that model only.
The admin flows' client has its own (`litellm-management`, gateway/accounts/litellm.py).

A trial is the next request once the open period is over, or the health probe's
(gateway/runtime/health.py), so the LiteLLM breaker closes by itself with no traffic.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

from gateway.config import BreakerConfig
from gateway.errors import ModelUnavailableError, UpstreamError, UpstreamUnavailableError
from gateway.ops.metrics import BREAKER_STATE, BREAKER_TRANSITIONS
from policies.breaker import CLOSED, Admit, BreakerMachine

log = logging.getLogger("maas_gateway.breaker")

T = TypeVar("T")

STATE_VALUES = {"closed": 0, "open": 1, "half-open": 2}  # the gauge's values
MODEL_PREFIX = "model:"


class UpstreamFailure(Exception):
    """Raised inside a guarded call to count it as a failure; `result` is kept for the caller."""

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


class Breaker:
    def __init__(
        self,
        target: str,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        *,
        per_key: bool = False,
        refusal: type[UpstreamError] = UpstreamUnavailableError,
    ) -> None:
        self.target = target
        self.config = config
        self._clock = clock
        self._per_key = per_key  # a model's breaker: breaker.min_distinct_keys applies
        self._refusal = refusal
        self.machine = BreakerMachine(config.rule(per_key))
        self.last_failure: tuple[float, str] | None = None  # (wall-clock time, reason), for /health/integration
        self._gauge = BREAKER_STATE.labels(target=target)
        self._gauge.set(0)

    def configure(self, config: BreakerConfig) -> None:
        """Apply new settings (config reload) without losing the current state."""
        self.config = config
        self.machine.configure(config.rule(self._per_key))

    @property
    def state(self) -> str:
        """closed | open | half-open"""
        return self.machine.state

    @property
    def closed(self) -> bool:
        return self.machine.state is CLOSED

    def trial_due(self) -> bool:
        """True when the breaker is not closed and the next call would be its trial."""
        return self.machine.trial_due(self._clock())

    def retry_after(self) -> int:
        """Whole seconds until a trial call may be let through (at least 1)."""
        return self.machine.retry_after(self._clock())

    def admit(self) -> bool:
        """Let a call through: True when it is the trial. While open: the refusal (503, Retry-After)."""
        machine = self.machine
        if machine.state is CLOSED:
            return False
        old = machine.state
        verdict = machine.admit(self._clock())
        if verdict is Admit.REFUSE:
            raise self._refusal(retry_after=self.retry_after())
        self._moved(old)
        return True

    def succeeded(self, trial: bool) -> None:
        old = self.machine.state
        self.machine.succeeded(self._clock(), trial)
        if self.machine.state is not old:
            self._moved(old)

    def failed(self, trial: bool, caller: str = "", reason: str = "") -> None:
        machine = self.machine
        old = machine.state
        now = self._clock()
        self.last_failure = (time.time(), reason or "failure")
        machine.failed(now, trial, caller)
        if machine.state is not old:
            if old is CLOSED:
                calls, failures = machine.counts(now)
                log.warning(
                    "breaker %s: %d of %d calls failed in %.0fs (%s), opening",
                    self.target, failures, calls, self.config.window_seconds, reason or "failure",
                    extra={"fields": {"target": self.target, "calls": calls, "failures": failures}},
                )
            self._moved(old)

    def released(self, trial: bool) -> None:
        self.machine.released(trial)

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run func through the breaker: UpstreamFailure counts as a failure and is re-raised;
        any other exception is an answer (a bug or a bad request of ours says nothing about
        LiteLLM's health), except a cancellation, which gives no verdict."""
        trial = self.admit()
        try:
            result = await func(*args)
        except UpstreamFailure as failure:
            self.failed(trial, reason=failure.reason)
            raise
        except Exception:
            self.succeeded(trial)
            raise
        except BaseException:
            self.released(trial)
            raise
        self.succeeded(trial)
        return result

    def _moved(self, old: str) -> None:
        new = self.machine.state
        level = logging.INFO if new is CLOSED else logging.WARNING
        log.log(level, "breaker %s: %s -> %s", self.target, old, new,
                extra={"fields": {"target": self.target, "from_state": old, "to_state": new}})
        self._gauge.set(STATE_VALUES[new])
        BREAKER_TRANSITIONS.labels(target=self.target, from_state=old, to_state=new).inc()


class ModelBreakers:
    """One breaker per model, made on first use for models the gateway knows (none for others)."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    def get(self, model: str | None, known: frozenset[str]) -> Breaker | None:
        breaker = self._breakers.get(model)  # type: ignore[arg-type]
        if breaker is None and model in known:
            breaker = Breaker(MODEL_PREFIX + model, self.config, self._clock,  # type: ignore[operator]
                              per_key=True, refusal=ModelUnavailableError)
            self._breakers[model] = breaker  # type: ignore[index]
        return breaker

    def all(self) -> list[Breaker]:
        return list(self._breakers.values())

    def configure(self, config: BreakerConfig) -> None:
        self.config = config
        for breaker in self._breakers.values():
            breaker.configure(config)
