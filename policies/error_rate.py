"""The breaker's error-rate rule: trip when failures reach a share of recent calls.

A rolling window of one-second buckets; time is a parameter, so the rule is
tested without a clock (policies/breaker.py uses it).
"""

from __future__ import annotations


class ErrorRateWindow:
    def __init__(self, window_seconds: float) -> None:
        self._size = max(1, int(round(window_seconds)))
        self._totals = [0] * self._size
        self._failures = [0] * self._size
        self._stamps = [-1] * self._size

    def record(self, now: float, failed: bool) -> None:
        second = int(now)
        index = second % self._size
        if self._stamps[index] != second:  # the bucket's second is over: start it again
            self._stamps[index] = second
            self._totals[index] = 0
            self._failures[index] = 0
        self._totals[index] += 1
        if failed:
            self._failures[index] += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) within the window ending at `now`."""
        oldest = int(now) - self._size + 1
        total = failures = 0
        for i in range(self._size):
            if self._stamps[i] >= oldest:
                total += self._totals[i]
                failures += self._failures[i]
        return total, failures

    def should_trip(self, now: float, threshold_percent: float, min_requests: int) -> bool:
        total, failures = self.counts(now)
        return total >= max(1, min_requests) and failures * 100 >= threshold_percent * total

    def reset(self) -> None:
        self._stamps = [-1] * self._size
        self._totals = [0] * self._size
        self._failures = [0] * self._size
