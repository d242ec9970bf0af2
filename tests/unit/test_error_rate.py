"""policies/error_rate.py: the rolling window of one-second buckets behind the breaker."""

from __future__ import annotations

import pytest

from policies.error_rate import ErrorRateWindow

pytestmark = pytest.mark.unit

T0 = 1_000_000.0  # a monotonic-clock-like start, far from zero


def window(seconds: float, events: list[tuple[float, bool]]) -> ErrorRateWindow:
    w = ErrorRateWindow(seconds)
    for at, failed in events:
        w.record(at, failed)
    return w


@pytest.mark.parametrize(
    ("seconds", "events", "now", "expected"),
    [
        (10, [], T0, (0, 0)),
        (10, [(T0, False)], T0, (1, 0)),
        (10, [(T0, True)], T0, (1, 1)),
        (10, [(T0, True), (T0 + 0.5, False), (T0 + 0.99, True)], T0 + 0.99, (3, 2)),
        # the window covers the last `seconds` whole seconds, the current one included
        (10, [(T0, True)], T0 + 9.99, (1, 1)),
        (10, [(T0, True)], T0 + 10, (0, 0)),
        (10, [(T0, True), (T0 + 5, False)], T0 + 10, (1, 0)),
        (10, [(T0, True), (T0 + 5, False)], T0 + 15, (0, 0)),
        # a bucket reused a window later starts from zero
        (10, [(T0, True), (T0, True), (T0 + 10, False)], T0 + 10, (1, 0)),
        (10, [(T0 + s, s % 2 == 0) for s in range(25)], T0 + 24, (10, 5)),
        # fractional and tiny windows round to whole seconds, at least one
        (0.2, [(T0, True), (T0 + 0.9, False)], T0 + 0.9, (2, 1)),
        (0.2, [(T0, True)], T0 + 1, (0, 0)),
        (2.6, [(T0, True), (T0 + 1, True), (T0 + 2, True)], T0 + 2, (3, 3)),
        (2.4, [(T0, True), (T0 + 1, True), (T0 + 2, True)], T0 + 2, (2, 2)),
    ],
    ids=[
        "empty", "one-ok", "one-failed", "same-second", "edge-in", "edge-out", "half-out", "all-out",
        "bucket-reuse", "long-run", "tiny-window", "tiny-window-out", "round-up", "round-down",
    ],
)
def test_counts(seconds: float, events, now: float, expected: tuple[int, int]) -> None:
    assert window(seconds, events).counts(now) == expected


@pytest.mark.parametrize(
    ("failures", "successes", "threshold", "min_requests", "expected"),
    [
        (10, 10, 50, 20, True),  # exactly the threshold trips
        (9, 11, 50, 20, False),
        (20, 0, 50, 20, True),
        (19, 0, 50, 20, False),  # too few calls to judge
        (0, 20, 50, 20, False),
        (1, 0, 100, 1, True),
        (1, 1, 100, 1, False),
        (1, 2, 33.3, 3, True),
        (1, 2, 33.4, 3, False),
        (1, 0, 50, 0, True),  # min_requests is at least one
        (0, 0, 50, 0, False),  # an empty window never trips
        (0, 0, 0.0001, 0, False),
    ],
    ids=lambda v: str(v),
)
def test_should_trip(failures: int, successes: int, threshold: float, min_requests: int, expected: bool) -> None:
    w = window(10, [(T0, True)] * failures + [(T0, False)] * successes)
    assert w.should_trip(T0 + 1, threshold, min_requests) is expected


def test_old_failures_leave_the_window() -> None:
    w = window(10, [(T0, True)] * 20)
    assert w.should_trip(T0 + 9, 50, 20) is True
    assert w.should_trip(T0 + 10, 50, 20) is False


def test_reset_forgets_everything() -> None:
    w = window(10, [(T0 + 1, True)] * 5)
    w.reset()
    assert w.counts(T0 + 2) == (0, 0)
    w.record(T0 + 2, False)
    assert w.counts(T0 + 2) == (1, 0)


def test_reset_forgets_everything_near_time_zero() -> None:
    """`now` is a parameter (time.monotonic in the breaker, anything in tests): a clock
    that starts near zero must not see counts from before reset()."""
    w = window(10, [(0.5, True)] * 5 + [(1.5, True)] * 5)
    w.reset()
    assert w.counts(2.0) == (0, 0)
