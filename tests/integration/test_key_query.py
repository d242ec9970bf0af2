"""The one key query (gateway/store/keyquery.py) and the one subscription rule (policies/access.py):
the record the hot path decides on and the rows the admin API and the console read agree on every
subscription of a real Postgres, whatever its status and expiry."""

from __future__ import annotations

import time

import pytest

from gateway.accounts.validation import live_model_ids
from gateway.config import LimitsConfig
from gateway.limits.limiter import Limiter
from gateway.store import db
from gateway.store.keyquery import key_query
from gateway.store.keys import hash_key
from policies.access import model_problem
from policies.limits import NO_LIMITS, Limits
from tests.support import seed_key

pytestmark = pytest.mark.integration

STATUSES = ("active", "suspended", "pending", "cancelled", "expired")
OFFSETS = (None, -3600.0, -0.5, 0.5, 3600.0)  # expires_at relative to the verdict's `now`


async def test_the_key_record_and_the_subscription_rows_give_the_same_verdicts(pool):
    now = time.time()
    cases = {f"kq-{status}-{i}-{now:.0f}": (status, offset) for status in STATUSES for i, offset in enumerate(OFFSETS)}
    seeded = await seed_key(pool, models=list(cases), subscriptions={m: s for m, (s, _) in cases.items()})
    for model, (_, offset) in cases.items():
        if offset is not None:
            await pool.execute("UPDATE subscriptions SET expires_at = to_timestamp($1::float8) "
                               "WHERE user_id = $2 AND model_id = $3", now + offset, seeded.user_id, model)
    record = await db.load_key(pool, hash_key(seeded.key), query=key_query("native"))
    assert record is not None and set(record.subscriptions) == set(cases)
    rows = await pool.fetch("SELECT model_id, status, expires_at FROM subscriptions WHERE user_id = $1 ORDER BY model_id",
                            seeded.user_id)

    from_record = sorted(m for m in cases if model_problem(record, m, now) is None)
    assert from_record == sorted(m for m, (s, o) in cases.items() if s == "active" and (o is None or o > 0))
    assert live_model_ids(rows, now) == from_record


async def test_a_key_with_no_limit_anywhere_loads_as_the_shared_no_limits(pool):
    """The limiter's fast path (no limit anywhere: no plan, no Redis) tests identity with NO_LIMITS:
    a record loaded from Postgres must hold that object, and one with a limit must not."""
    plain = await seed_key(pool, models=["kq-nolimits"], subscriptions={"kq-nolimits": "active"})
    record = await db.load_key(pool, hash_key(plain.key), query=key_query("native"))
    assert record.limits is NO_LIMITS and record.user_limits is NO_LIMITS
    assert record.subscriptions["kq-nolimits"].limits is NO_LIMITS
    assert Limiter(LimitsConfig(), None, 60.0).checks(record, "kq-nolimits", time.time()) == ()

    await pool.execute("UPDATE api_keys SET rpm_limit = 5 WHERE key_hash = $1", hash_key(plain.key))
    limited = await db.load_key(pool, hash_key(plain.key), query=key_query("native"))
    assert limited.limits == Limits(rpm_limit=5) and limited.user_limits is NO_LIMITS
    assert [c.limit for c in Limiter(LimitsConfig(), None, 60.0).checks(limited, "kq-nolimits", time.time())] == [5]
