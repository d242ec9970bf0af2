"""Failed authentications per client address: when an address is refused, and for how long.

Fixed windows aligned on the epoch (`window_seconds`, at most 60), so every instance that
shares a counter names the same window: the count is the failures of an address in the
window of `now`; over `limit`, the address is refused until the window ends (Retry-After:
the seconds left, at least 1, never above 60). Time is a parameter; the counting (Redis or
in-process) is gateway/serving/authguard.py's.
"""

from __future__ import annotations

import math

MAX_RETRY_AFTER = 60


def window_index(now: float, window_seconds: float) -> int:
    """Which window `now` falls in: part of the counter's name."""
    return int(now // window_seconds)


def blocked_until(count: int, limit: int, now: float, window_seconds: float) -> float | None:
    """With `count` failures in the window of `now`: the time until which the address is refused, or None."""
    if count <= limit:
        return None
    return (window_index(now, window_seconds) + 1) * window_seconds


def retry_after(until: float, now: float) -> int:
    """Retry-After in whole seconds for a refusal lasting until `until`."""
    return min(MAX_RETRY_AFTER, max(1, math.ceil(until - now)))
