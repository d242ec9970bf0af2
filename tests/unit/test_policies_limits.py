"""policies/limits.py: which limits apply, admission, Retry-After, periods and the header values."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.limits import (
    NO_LIMITS,
    Binding,
    Kind,
    Limits,
    Scope,
    add_months,
    effective,
    format_reset,
    period,
    plan,
    refusal_detail,
    retry_after,
    seed_day,
    used,
    valid,
    verdict,
    weight,
)

pytestmark = pytest.mark.unit


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()


NOW = ts(2026, 11, 30, 17, 45, 15)  # 15 s into a minute: the previous minute weighs 0.75


def test_a_null_field_inherits_the_default_and_zero_is_kept():
    default = Limits(rpm_limit=60, tpm_limit=1000, max_budget=100.0)
    own = Limits(rpm_limit=0, max_parallel_requests=2)
    assert effective(own, default) == Limits(rpm_limit=0, tpm_limit=1000, max_parallel_requests=2, max_budget=100.0)
    assert effective(None, default) == default
    assert not NO_LIMITS.any() and Limits(quota_tokens=0).any()


def test_no_limit_anywhere_plans_no_check():
    assert plan("k1", "gpt-4o", NO_LIMITS, NO_LIMITS, NO_LIMITS, NOW) == ()


def test_a_plan_names_each_counter_by_scope_window_and_period():
    checks = plan("k1", "gpt-4o", Limits(rpm_limit=5, max_parallel_requests=2), Limits(tpm_limit=100, max_budget=10.0),
                  Limits(quota_requests=1000, quota_tokens=5000), NOW)
    minute = int(NOW // 60)
    month = int(ts(2026, 11, 1))
    assert [(c.scope, c.kind, c.limit, c.counter, c.previous, c.ends) for c in checks] == [
        (Scope.KEY, Kind.REQUESTS_PER_MINUTE, 5, f"key:k1:rpm:{minute}", f"key:k1:rpm:{minute - 1}", (minute + 1) * 60),
        (Scope.KEY, Kind.PARALLEL, 2, "key:k1:par", None, float("inf")),
        (Scope.USER, Kind.TOKENS_PER_MINUTE, 100, f"user:tpm:{minute}", f"user:tpm:{minute - 1}", (minute + 1) * 60),
        (Scope.USER, Kind.BUDGET, 10.0, f"user:spend:{month}", None, ts(2026, 12, 1)),
        (Scope.SUBSCRIPTION, Kind.QUOTA_REQUESTS, 1000, f"sub:gpt-4o:req:{month}", None, ts(2026, 12, 1)),
        (Scope.SUBSCRIPTION, Kind.QUOTA_TOKENS, 5000, f"sub:gpt-4o:tok:{month}", None, ts(2026, 12, 1)),
    ]
    assert weight(checks[0], NOW) == pytest.approx(0.75)
    assert [c.starts for c in checks] == [None, None, None, ts(2026, 11, 1), ts(2026, 11, 1), ts(2026, 11, 1)]


def test_a_plan_holds_from_its_minutes_and_periods_start_to_the_first_end():
    minute = int(NOW // 60) * 60
    assert valid(plan("k1", "m", Limits(rpm_limit=5, max_parallel_requests=2), NO_LIMITS, NO_LIMITS, NOW)) == (
        minute, minute + 60)
    # a period that began within this minute (reset_at at 17:45:10): from then on
    began = ts(2026, 11, 30, 17, 45, 10)
    checks = plan("k1", "m", Limits(rpm_limit=5), NO_LIMITS, Limits(quota_requests=10), NOW, reset_at=began)
    assert valid(checks) == (began, minute + 60)
    assert plan("k1", "m", Limits(rpm_limit=5), NO_LIMITS, Limits(quota_requests=10), began + 49.9, reset_at=began) == checks
    assert valid(plan("k1", "m", Limits(max_parallel_requests=2), NO_LIMITS, NO_LIMITS, NOW)) == (-math.inf, math.inf)


def test_a_lost_counter_is_seeded_from_the_whole_utc_days_of_its_period():
    assert seed_day(ts(2026, 11, 1)) == date(2026, 11, 1)
    assert seed_day(ts(2026, 11, 1, 0, 0, 1)) == date(2026, 11, 2)  # the first day's part is not recorded apart
    assert seed_day(ts(2026, 12, 31, 23)) == date(2027, 1, 1)


def test_the_sliding_window_weighs_the_previous_minute_by_what_remains_of_it():
    [check] = plan("k1", "m", Limits(rpm_limit=10), NO_LIMITS, NO_LIMITS, NOW)
    assert used(check, 2, 8, NOW) == pytest.approx(8.0)  # 8 x 0.75 + 2
    assert verdict((check,), ((2, 8),), NOW).admitted  # 8 + 1 <= 10
    refused = verdict((check,), ((4, 8),), NOW)  # 10 + 1 > 10
    assert (refused.admitted, refused.refused_by, refused.retry_after) == (False, check, 8)  # 0.75 -> 0.6: 7.5 s


def test_a_request_over_this_minutes_own_count_waits_for_the_next_minute_to_decay_it():
    [check] = plan("k1", "m", Limits(rpm_limit=5), NO_LIMITS, NO_LIMITS, NOW)
    # 5 this minute: 45 s to the minute's end, then 5 x (1 - t/60) <= 4 after 12 s more
    assert verdict((check,), ((5, 0),), NOW).retry_after == 57


def test_tokens_admit_while_below_the_limit_and_are_charged_nothing_at_admission():
    [check] = plan("k1", "m", Limits(tpm_limit=100), NO_LIMITS, NO_LIMITS, NOW)
    assert verdict((check,), ((99, 0),), NOW).admitted
    refused = verdict((check,), ((100, 0),), NOW)
    assert not refused.admitted and refused.retry_after == 46  # 45 s to the minute's end, +1 to fall below


def test_zero_allows_nothing():
    checks = plan("k1", "m", Limits(rpm_limit=0), NO_LIMITS, Limits(quota_tokens=0), NOW)
    refused = verdict(checks, ((0, 0), (0, 0)), NOW)
    assert (refused.admitted, refused.refused_by.kind, refused.retry_after) == (False, Kind.QUOTA_TOKENS, None)
    only_rate = verdict(checks[:1], ((0, 0),), NOW)
    assert (only_rate.admitted, only_rate.retry_after) == (False, 60)


def test_a_quota_refusal_comes_before_a_rate_limit_and_says_when_it_resets():
    checks = plan("k1", "gpt-4o", Limits(rpm_limit=1), NO_LIMITS, Limits(quota_requests=100), NOW)
    refused = verdict(checks, ((1, 0), (100, 0)), NOW)
    assert refused.refused_by == checks[1] and refused.retry_after is None
    assert refusal_detail(checks[1]) == ("the request quota of your subscription to this model (100) is used up; "
                                         "it resets at 2026-12-01 00:00 UTC")
    assert refusal_detail(checks[0]) == "the requests per minute of this API key (1) is reached"


def test_parallel_requests_are_refused_for_a_second():
    [check] = plan("k1", "m", Limits(max_parallel_requests=2), NO_LIMITS, NO_LIMITS, NOW)
    assert verdict((check,), ((1, 0),), NOW).admitted
    assert verdict((check,), ((2, 0),), NOW).retry_after == 1


def test_the_binding_limit_is_the_one_with_least_remaining_for_requests_and_for_tokens():
    checks = plan("k1", "m", Limits(rpm_limit=10, tpm_limit=1000), Limits(rpm_limit=60), Limits(quota_tokens=50_000), NOW)
    result = verdict(checks, ((3, 0), (40, 0), (0, 0), (49_900, 0)), NOW)
    minute_left = (int(NOW // 60) + 1) * 60 - NOW
    assert result.requests == Binding(10, 6, minute_left + 60)  # the key's 10 - 4 beats the user's 60 - 41
    assert result.tokens == Binding(50_000, 100, ts(2026, 12, 1) - NOW)
    assert verdict(plan("k1", "m", Limits(max_parallel_requests=1), NO_LIMITS, NO_LIMITS, NOW), ((0, 0),), NOW).tokens is None


def test_quota_periods_are_calendar_months_in_utc_or_months_from_reset_at():
    assert period(ts(2026, 2, 28, 23, 59, 59), None) == (ts(2026, 2, 1), ts(2026, 3, 1))
    assert period(ts(2026, 12, 31, 12), None) == (ts(2026, 12, 1), ts(2027, 1, 1))
    anchor = ts(2026, 1, 31, 8)
    assert period(ts(2026, 3, 1), anchor) == (ts(2026, 2, 28, 8), ts(2026, 3, 31, 8))
    assert period(ts(2026, 3, 31, 8), anchor) == (ts(2026, 3, 31, 8), ts(2026, 4, 30, 8))
    assert period(ts(2025, 12, 15), anchor) == (ts(2025, 11, 30, 8), ts(2025, 12, 31, 8))  # reset_at in the future
    assert add_months(ts(2024, 1, 31), 1) == ts(2024, 2, 29)


@given(st.floats(0, 4e9), st.floats(0, 4e9))
def test_a_period_always_holds_now_and_lasts_about_a_month(now, anchor):
    start, end = period(now, anchor)
    assert start <= now < end
    # datetime keeps microseconds: a fractional anchor's bounds may be a microsecond off a whole day
    assert 28 * 86400 - 1e-5 <= end - start <= 31 * 86400 + 1e-5


@given(limit=st.integers(1, 500), current=st.integers(0, 600), previous=st.integers(0, 600),
       offset=st.floats(0, 59.999), tokens=st.booleans())
def test_after_retry_after_seconds_the_refused_request_fits(limit, current, previous, offset, tokens):
    now = 1_800_000_000.0 + offset  # a minute boundary
    limits = Limits(tpm_limit=limit) if tokens else Limits(rpm_limit=limit)
    [check] = plan("k", "m", limits, NO_LIMITS, NO_LIMITS, now)
    result = verdict((check,), ((current, previous),), now)
    if result.admitted:
        return
    later = now + result.retry_after
    [again] = plan("k", "m", limits, NO_LIMITS, NO_LIMITS, later)
    moved = int(later // 60) - int(now // 60)
    counts = {0: (current, previous), 1: (0, current)}.get(moved, (0, 0))
    fits_later = verdict((again,), (counts,), later).admitted
    assert fits_later or result.retry_after == 60


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (0.02, "20ms"), (1, "1s"), (0.999, "999ms"), (1.2, "2s"),
                                               (360, "6m0s"), (59.5, "1m0s"), (3723, "1h2m3s"), (86400 * 2, "48h0m0s")])
def test_resets_are_written_as_openai_writes_them(seconds, text):
    assert format_reset(seconds) == text


def test_budgets_count_per_their_budget_duration_and_quotas_per_month_and_each_says_when_it_resets():
    """design.md: quota periods are calendar months in UTC unless reset_at says otherwise; a budget
    counts per its budget_duration."""
    checks = plan("k1", "gpt-4o", NO_LIMITS, Limits(max_budget=5.0, budget_duration="1d"),
                  Limits(quota_requests=10, max_budget=2.0, budget_duration="30s"), NOW)
    assert [(c.counter, c.starts, c.ends) for c in checks] == [
        (f"user:spend:{int(ts(2026, 11, 30))}", ts(2026, 11, 30), ts(2026, 12, 1)),
        (f"sub:gpt-4o:req:{int(ts(2026, 11, 1))}", ts(2026, 11, 1), ts(2026, 12, 1)),  # not 30 s: a quota
        (f"sub:gpt-4o:spend:{int(ts(2026, 11, 30, 17, 45))}", ts(2026, 11, 30, 17, 45), ts(2026, 11, 30, 17, 45, 30)),
    ]
    assert refusal_detail(checks[0]) == "the budget of your account ($5) is used up; it resets at 2026-12-01 00:00 UTC"
    assert refusal_detail(checks[1]) == ("the request quota of your subscription to this model (10) is used up; "
                                         "it resets at 2026-12-01 00:00 UTC")
    assert refusal_detail(checks[2]) == ("the budget of your subscription to this model ($2) is used up; "
                                         "it resets at 2026-11-30 17:45:30 UTC")
    anchored = plan("k1", "gpt-4o", NO_LIMITS, NO_LIMITS,
                    Limits(quota_tokens=10, max_budget=1.0, budget_duration="7d"), NOW, reset_at=ts(2026, 1, 1, 6))
    assert [(c.starts, c.ends) for c in anchored] == [
        (ts(2026, 11, 1, 6), ts(2026, 12, 1, 6)),  # the quota: months from reset_at
        (ts(2026, 11, 26, 6), ts(2026, 12, 3, 6)),  # the budget: weeks from reset_at
    ]
