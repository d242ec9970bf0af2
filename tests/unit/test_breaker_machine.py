"""policies/breaker.py: the breaker's state machine, time and outcomes given as arguments."""

from __future__ import annotations

import pytest

from policies.breaker import CLOSED, HALF_OPEN, OPEN, Admit, BreakerMachine, BreakerRule

pytestmark = pytest.mark.unit

PER_KEY = BreakerRule(consecutive_failures=3, min_requests=1000, reset_timeout_seconds=30, window_seconds=10, min_keys=3)


def test_one_key_failing_again_and_again_does_not_open_a_per_key_breaker() -> None:
    machine = BreakerMachine(PER_KEY)
    for i in range(50):
        machine.failed(100.0 + i * 0.1, caller="key-a")
    assert machine.state == CLOSED and machine.admit(105.0) is Admit.PASS


def test_two_keys_do_not_open_it_and_the_third_does() -> None:
    machine = BreakerMachine(PER_KEY)
    for caller in ("key-a", "key-b", "key-a", "key-b", "key-a"):
        machine.failed(100.0, caller=caller)
    assert machine.state == CLOSED
    machine.failed(101.0, caller="key-c")
    assert machine.state == OPEN
    assert machine.admit(101.0) is Admit.REFUSE
    assert machine.retry_after(101.0) == 30


def test_keys_whose_failures_left_the_window_are_not_counted() -> None:
    machine = BreakerMachine(PER_KEY)
    machine.failed(100.0, caller="key-a")
    machine.failed(100.0, caller="key-b")
    machine.failed(111.0, caller="key-c")  # key-a and key-b failed 11 s ago, outside the 10 s window
    assert machine.state == CLOSED and machine.callers(111.0) == 1
    machine.failed(112.0, caller="key-a")
    machine.failed(112.0, caller="key-b")
    assert machine.state == OPEN


def test_the_error_rate_rule_needs_the_keys_too() -> None:
    rule = BreakerRule(consecutive_failures=1000, error_threshold_percent=50, min_requests=4, window_seconds=10,
                       reset_timeout_seconds=30, min_keys=2)
    machine = BreakerMachine(rule)
    for _ in range(4):
        machine.succeeded(100.0)
        machine.failed(100.0, caller="key-a")  # 50% of 8 calls, one key
    assert machine.state == CLOSED
    machine.failed(100.0, caller="key-b")
    assert machine.state == OPEN


def test_a_successful_call_resets_the_consecutive_count() -> None:
    machine = BreakerMachine(BreakerRule(consecutive_failures=3, min_requests=1000))
    for _ in range(5):
        machine.failed(100.0)
        machine.failed(100.0)
        machine.succeeded(100.0)
    assert machine.state == CLOSED
    machine.failed(100.0)
    machine.failed(100.0)
    machine.failed(100.0)
    assert machine.state == OPEN


def test_after_the_open_period_one_trial_and_its_success_closes() -> None:
    machine = BreakerMachine(BreakerRule(consecutive_failures=1, reset_timeout_seconds=30))
    machine.failed(100.0)
    assert not machine.trial_due(129.9) and machine.admit(129.9) is Admit.REFUSE
    assert machine.trial_due(130.0)
    assert machine.admit(130.0) is Admit.TRIAL and machine.state == HALF_OPEN
    assert machine.admit(130.0) is Admit.REFUSE  # one trial at a time
    machine.succeeded(131.0, trial=True)
    assert machine.state == CLOSED and machine.admit(131.0) is Admit.PASS


def test_a_failed_trial_opens_it_for_another_period_even_from_one_key() -> None:
    machine = BreakerMachine(BreakerRule(consecutive_failures=1, reset_timeout_seconds=30, min_keys=1))
    machine.failed(100.0)
    assert machine.admit(130.0) is Admit.TRIAL
    machine.failed(131.0, trial=True, caller="key-a")
    assert machine.state == OPEN and machine.retry_after(131.0) == 30


def test_a_trial_without_a_verdict_frees_the_place_for_the_next() -> None:
    machine = BreakerMachine(BreakerRule(consecutive_failures=1, reset_timeout_seconds=30))
    machine.failed(100.0)
    assert machine.admit(130.0) is Admit.TRIAL
    machine.released(trial=True)
    assert machine.state == HALF_OPEN and machine.trial_due(130.0)
    assert machine.admit(130.0) is Admit.TRIAL


def test_late_outcomes_of_calls_admitted_while_closed_change_nothing() -> None:
    machine = BreakerMachine(BreakerRule(consecutive_failures=1, reset_timeout_seconds=30))
    machine.failed(100.0)
    machine.succeeded(101.0)
    machine.failed(120.0)
    assert machine.state == OPEN and machine.retry_after(120.0) == 10  # the period did not restart


def test_closing_forgets_the_window_and_the_keys() -> None:
    machine = BreakerMachine(PER_KEY)
    for caller in ("key-a", "key-b", "key-c"):
        machine.failed(100.0, caller=caller)
    assert machine.admit(130.0) is Admit.TRIAL
    machine.succeeded(130.0, trial=True)
    machine.failed(131.0, caller="key-a")
    machine.failed(131.0, caller="key-b")
    machine.failed(131.0, caller="key-a")
    assert machine.state == CLOSED and machine.callers(131.0) == 2


def test_configure_moves_an_open_period_by_the_change() -> None:
    machine = BreakerMachine(BreakerRule(consecutive_failures=1, reset_timeout_seconds=30))
    machine.failed(100.0)
    machine.configure(BreakerRule(consecutive_failures=1, reset_timeout_seconds=5))
    assert machine.state == OPEN and machine.retry_after(100.0) == 5
