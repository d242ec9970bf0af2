"""Limiter.checks keeps plan()'s answer per key and model while it holds (policies.limits.valid): the
same checks all through a minute and its periods, new ones in the next minute or for a changed key."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from gateway.config import LimitsConfig
from gateway.limits.limiter import Limiter
from policies.limits import Limits, effective, plan
from policies.records import KeyRecord, SubscriptionRecord

pytestmark = pytest.mark.unit

MINUTE_START = datetime(2026, 11, 30, 17, 45, tzinfo=timezone.utc).timestamp()
KEY = KeyRecord(key_id="k1", user_id="u1", limits=Limits(rpm_limit=5, tpm_limit=100),
                subscriptions={"m": SubscriptionRecord("m", "active", limits=Limits(quota_requests=10),
                                                       reset_at=MINUTE_START + 10)})


def expected(record: KeyRecord, now: float) -> tuple:
    subscription = record.subscriptions["m"]
    return plan(record.key_id, "m", record.limits, record.user_limits, effective(subscription.limits, Limits()), now,
                subscription.reset_at)


def test_checks_are_planned_once_while_their_minute_and_periods_hold():
    limiter = Limiter(LimitsConfig(), None, 600.0)
    first = limiter.checks(KEY, "m", MINUTE_START + 10)  # the subscription's period began at :10
    assert first == expected(KEY, MINUTE_START + 10)
    assert limiter.checks(KEY, "m", MINUTE_START + 59.999) is first
    assert limiter.checks(KEY, "m", MINUTE_START + 9.999) == expected(KEY, MINUTE_START + 9.999) != first  # before it
    assert limiter.checks(KEY, "m", MINUTE_START + 60) == expected(KEY, MINUTE_START + 60) != first  # the next minute


def test_a_changed_key_is_planned_anew():
    limiter = Limiter(LimitsConfig(), None, 600.0)
    first = limiter.checks(KEY, "m", MINUTE_START + 30)
    changed = dataclasses.replace(KEY, limits=Limits(rpm_limit=6, tpm_limit=100))  # as the key store loads it
    assert [c.limit for c in limiter.checks(changed, "m", MINUTE_START + 30)] == [6, 100, 10] != [c.limit for c in first]
