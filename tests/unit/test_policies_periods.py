"""policies/periods.py against LiteLLM as the oracle: the same `budget_duration` strings accepted (and
refused), the same lengths (litellm_core_utils/duration_parser.duration_in_seconds_from), and the
same periods where LiteLLM's resets are regular (get_next_standardized_reset_time in UTC)."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list at import

from litellm.litellm_core_utils import duration_parser  # noqa: E402

from policies.periods import LONGEST_MONTHS, UNIT_SECONDS, Duration, bounds, custom, parse  # noqa: E402

pytestmark = pytest.mark.unit


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()


def ours(text: str, start: float) -> int | str:
    try:
        return parse(text).seconds_from(start)
    except (ValueError, OverflowError):
        return "refused"


def litellm(text: str, start: float) -> int | str:
    try:
        return duration_parser.duration_in_seconds_from(datetime.fromtimestamp(start, timezone.utc), text)
    except (ValueError, OverflowError):
        return "refused"


PIECES = st.sampled_from(["0", "1", "7", "24", "30", "90", "s", "m", "h", "d", "w", "mo", "M", "D", "month", "ly",
                          " ", "-", ".", "+", "x", "٣", "hourly", "Daily", " WEEKLY ", "monthly", "1e3", "\t"])
CORPUS = st.one_of(st.lists(PIECES, max_size=4).map("".join), st.text(max_size=8))
STARTS = st.integers(int(ts(1990, 1, 1)), int(ts(2090, 1, 1))).map(float)


@settings(max_examples=600, deadline=None)
@given(CORPUS, STARTS)
@example("30s", ts(2026, 1, 31))
@example("1mo", ts(2026, 1, 31))
@example("2mo", ts(2024, 12, 31))
@example("monthly", ts(2026, 2, 1))
@example(" Weekly", 0.0)
@example("7", 0.0)
@example("1hour", 0.0)
@example("5 d", 0.0)
@example("", 0.0)
@example("99999999mo", 0.0)
@example("٣d", 0.0)
def test_the_same_durations_as_litellms_parser(text, start):
    assert ours(text, start) == litellm(text, start)


REGULAR = ["1s", "30s", "1m", "15m", "30m", "1h", "2h", "6h", "12h", "24h", "hourly", "daily", "1d", "7d", "1w",
           "weekly", "30d", "monthly", "1mo"]
MICROSECONDS = st.integers(int(ts(2000, 1, 1)) * 10**6, int(ts(2080, 1, 1)) * 10**6)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(REGULAR), MICROSECONDS)
@example("1mo", int(ts(2026, 12, 31, 23, 59, 59)) * 10**6)
@example("7d", int(ts(2026, 11, 30)) * 10**6)
@example("1h", int(ts(2026, 11, 30, 17)) * 10**6)
@example("30d", int(ts(2024, 2, 29, 12)) * 10**6)
def test_periods_end_where_litellm_resets_and_start_where_its_window_starts(text, microseconds):
    now = microseconds / 10**6
    start, end = bounds(now, parse(text))
    reset = duration_parser.get_next_standardized_reset_time(text, datetime.fromtimestamp(now, timezone.utc))
    assert end == reset.timestamp()
    assert start == duration_parser.get_budget_window_start(text, reset).timestamp()
    assert start <= now < end


def test_where_litellms_resets_drift_periods_are_fixed_lengths_from_the_epoch_or_the_anchor():
    assert bounds(ts(2026, 11, 30, 17), parse("2d")) == (ts(2026, 11, 29), ts(2026, 12, 1))
    assert bounds(ts(2026, 11, 30, 23), parse("5h")) == (ts(2026, 11, 30, 22), ts(2026, 12, 1, 3))  # 5 h from 1970
    assert bounds(ts(2026, 11, 30, 17), parse("2mo")) == (ts(2026, 11, 1), ts(2027, 1, 1))
    anchor = ts(2026, 1, 31, 8)
    assert bounds(ts(2026, 3, 1), parse("1mo"), anchor) == (ts(2026, 2, 28, 8), ts(2026, 3, 31, 8))
    assert bounds(ts(2026, 11, 30, 17), parse("7d"), anchor) == (ts(2026, 11, 28, 8), ts(2026, 12, 5, 8))
    assert bounds(ts(2025, 1, 1), parse("1d"), anchor) == (ts(2024, 12, 31, 8), ts(2025, 1, 1, 8))  # anchor later


@given(st.sampled_from(["1s", "7m", "5h", "2d", "3w", "2mo", "30d", "1d"]), STARTS, st.none() | STARTS)
def test_a_period_always_holds_now(text, now, anchor):
    start, end = bounds(now, parse(text), anchor)
    assert start <= now < end


@pytest.mark.parametrize(("text", "kept"), [
    (None, None), ("monthly", None), ("1mo", None), ("30d", None), (" MONTHLY", None), ("0d", None), ("bad", None),
    ("1d", "1d"), ("weekly", "weekly"), ("2mo", "2mo"), ("30s", "30s"),
    ("1200mo", "1200mo"), ("1201mo", None), ("30000mo", None), ("99999999999999999999d", None), ("37200d", "37200d"),
    ("37201d", None),
])
def test_a_record_keeps_only_a_period_other_than_the_calendar_month(text, kept):
    assert custom(text) == kept


def test_the_parsed_units():
    assert [parse(t) for t in ("30s", "1h", "daily", "7d", "1mo", "2w")] == [
        Duration(30, "s"), Duration(1, "h"), Duration(24, "h"), Duration(7, "d"), Duration(1, "mo"), Duration(2, "w")]


def longest(unit: str) -> int:
    return LONGEST_MONTHS if unit == "mo" else LONGEST_MONTHS * 31 * 86_400 // UNIT_SECONDS[unit]


USABLE = st.sampled_from(["s", "m", "h", "d", "w", "mo"]).flatmap(
    lambda unit: st.integers(1, longest(unit)).map(lambda value: f"{value}{unit}"))


@settings(max_examples=300, deadline=None)
@given(USABLE, STARTS, st.none() | STARTS)
@example("1200mo", ts(2090, 1, 1), None)
@example(f"{longest('s')}s", ts(1990, 1, 1), ts(2090, 1, 1))
def test_every_period_a_record_keeps_has_bounds_that_fit_a_redis_expiry(text, now, anchor):
    """What custom() keeps reaches the hot path: its bounds must exist (no year 0 or 10000) and the
    period's end, in milliseconds from now, must fit the signed 64-bit integer of Redis's PX."""
    start, end = bounds(now, parse(custom(text) or "1mo"), anchor)
    assert start <= now < end and (end - now) * 1000 < 2**63
