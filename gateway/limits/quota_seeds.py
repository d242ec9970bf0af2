"""Period counters seeded from Postgres when the limiter finds them missing (gateway/limits/limiter.py).

    seeds(pool, user_id, key_id, model, checks)   each period check's usage so far (requests, tokens
                                                  or spend: the subscription's, the user's, the key's
                                                  or the key's for this model), summed from usage_daily
                                                  since the period's first whole UTC day

A Redis that restarts without persistence (or evicts a counter) would otherwise hand every user a
fresh quota and budget. usage_daily is the truth the usage batches write (gateway/limits/usage_recorder.py),
so a restart forgets at most what was not flushed yet: the last usage.flush_seconds of each instance.
The same table serves both schemas: on a LiteMaaS database the pools search maas_gateway first.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from policies.limits import Check, Kind, Scope, seed_day

NEVER = date(9999, 12, 31)

SEEDS_SQL = """
SELECT coalesce(sum(requests) FILTER (WHERE model_id = $2 AND day >= $3), 0)::int8 AS requests,
       coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE model_id = $2 AND day >= $3), 0)::int8 AS tokens,
       coalesce(sum(spend) FILTER (WHERE model_id = $2 AND day >= $3), 0)::float8 AS spend,
       coalesce(sum(spend) FILTER (WHERE day >= $4), 0)::float8 AS user_spend,
       coalesce(sum(spend) FILTER (WHERE key_id = $5 AND day >= $6), 0)::float8 AS key_spend,
       coalesce(sum(spend) FILTER (WHERE key_id = $5 AND model_id = $2 AND day >= $7), 0)::float8 AS key_model_spend
FROM usage_daily WHERE user_id = $1 AND day >= least($3::date, $4::date, $6::date, $7::date)
"""
_SPEND = {Scope.USER: "user_spend", Scope.KEY: "key_spend", Scope.KEY_MODEL: "key_model_spend", Scope.SUBSCRIPTION: "spend"}


async def seeds(pool: Any, user_id: str, key_id: str, model: str, checks: list[Check],
                acquire_timeout: float = 1.0) -> list[float]:
    """What each of `checks` (period checks: quotas and budgets) has counted so far in its period,
    in one query; ints for requests and tokens, floats for spend. A busy pool is waited for at most
    `acquire_timeout` seconds (database.acquire_timeout_ms), as a cold key's lookup is: then
    TimeoutError, and the limiter counts the request in-process."""
    def since(scope: Scope) -> date:
        return min((seed_day(c.starts) for c in checks if c.scope is scope and c.starts is not None), default=NEVER)

    days = since(Scope.SUBSCRIPTION), since(Scope.USER), since(Scope.KEY), since(Scope.KEY_MODEL)
    if min(days) > datetime.now(timezone.utc).date():  # periods that began today, after midnight: no whole
        return [0 if check.kind in (Kind.QUOTA_REQUESTS, Kind.QUOTA_TOKENS) else 0.0 for check in checks]  # day yet
    async with pool.acquire(timeout=acquire_timeout) as conn:
        row = await conn.fetchrow(SEEDS_SQL, user_id, model, days[0], days[1], key_id, days[2], days[3])
    return [{Kind.QUOTA_REQUESTS: row["requests"], Kind.QUOTA_TOKENS: row["tokens"]}.get(check.kind, row[_SPEND[check.scope]])
            for check in checks]
