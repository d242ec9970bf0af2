"""Period counters seeded from Postgres when the limiter finds them missing (gateway/limiter.py).

    seeds(pool, user_id, model, checks)   each period check's usage so far (requests, tokens or
                                          spend), summed from usage_daily since the period's first
                                          whole UTC day (policies.limits.seed_day)

A Redis that restarts without persistence (or evicts a counter) would otherwise hand every user a
fresh quota and budget. usage_daily is the truth the usage batches write (gateway/usage_recorder.py),
so a restart forgets at most what was not flushed yet: the last usage.flush_seconds of each instance.
The same table serves both schemas: on a LiteMaaS database the pools search maas_gateway first.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from policies.limits import Check, Kind, Scope, seed_day

NEVER = date(9999, 12, 31)

SEEDS_SQL = """
SELECT coalesce(sum(requests) FILTER (WHERE model_id = $2 AND day >= $3), 0)::int8 AS requests,
       coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE model_id = $2 AND day >= $3), 0)::int8 AS tokens,
       coalesce(sum(spend) FILTER (WHERE model_id = $2 AND day >= $3), 0)::float8 AS spend,
       coalesce(sum(spend) FILTER (WHERE day >= $4), 0)::float8 AS user_spend
FROM usage_daily WHERE user_id = $1 AND day >= least($3::date, $4::date)
"""


async def seeds(pool: Any, user_id: str, model: str, checks: list[Check]) -> list[float]:
    """What each of `checks` (period checks: quotas and budgets) has counted so far in its period,
    in one query; ints for requests and tokens, floats for spend."""
    sub_since = min((seed_day(c.starts) for c in checks if c.scope is Scope.SUBSCRIPTION and c.starts is not None),
                    default=NEVER)
    user_since = min((seed_day(c.starts) for c in checks if c.scope is Scope.USER and c.starts is not None),
                     default=NEVER)
    row = await pool.fetchrow(SEEDS_SQL, user_id, model, sub_since, user_since)
    return [row["user_spend"] if check.scope is Scope.USER
            else {Kind.QUOTA_REQUESTS: row["requests"], Kind.QUOTA_TOKENS: row["tokens"]}.get(check.kind, row["spend"])
            for check in checks]
