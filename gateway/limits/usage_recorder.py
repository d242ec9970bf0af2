"""Usage records: requests, tokens and spend per key, model and UTC day, batched to Postgres.

    record(meter)   in memory, no I/O: one served request's counts added to its row
    flush()         every usage.flush_seconds, in one transaction: usage_daily upserted (added to),
                    the subscriptions' used_requests / used_tokens set to their current period's sums,
                    the keys' last_used_at moved forward; a failed flush keeps its rows for the next.
                    On a LiteMaaS database usage_daily is in the schema maas_gateway and these
                    two UPDATEs are LiteMaaS's (gateway/store/litemaas.py USED_SQL, LAST_USED_SQL)
    close()         the last flush, at the lifespan's end: after the drain (gateway/runtime/drain.py) every
                    request has finished, so a SIGTERM loses nothing

A crash (SIGKILL, OOM) loses at most the last usage.flush_seconds of records, and while Postgres is
down at most usage.max_pending_rows rows are kept (the oldest beyond are dropped, logged and counted
in maas_gateway_usage_rows_dropped_total). Rows older than usage.retention_days are deleted hourly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date, datetime, timezone
from typing import Any, Callable

from gateway.config import UsageConfig
from gateway.limits.limiter import Meter
from gateway.ops.metrics import USAGE_ROWS_DROPPED
from policies.limits import period

log = logging.getLogger("maas_gateway.usage")

RETENTION_EVERY_SECONDS = 3600.0

UPSERT = """
INSERT INTO usage_daily (day, key_id, user_id, model_id, requests, prompt_tokens, completion_tokens, spend)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (day, key_id, model_id) DO UPDATE SET
    requests = usage_daily.requests + EXCLUDED.requests,
    prompt_tokens = usage_daily.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = usage_daily.completion_tokens + EXCLUDED.completion_tokens,
    spend = usage_daily.spend + EXCLUDED.spend
"""
# The subscription's used_* are its current period's sums (whole UTC days from the period's first).
USED = """
UPDATE subscriptions s SET used_requests = u.requests, used_tokens = u.tokens
FROM (SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens
      FROM usage_daily WHERE user_id = $1 AND model_id = $2 AND day >= $3) u
WHERE s.user_id = $1 AND s.model_id = $2
"""
LAST_USED = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"

Row = list  # [user_id, requests, prompt_tokens, completion_tokens, spend]


class UsageRecorder:
    def __init__(self, pool: Any, config: UsageConfig, clock: Callable[[], float] = time.time, *,
                 used_sql: str = USED, last_used_sql: str = LAST_USED) -> None:
        self._pool = pool
        self._used_sql = used_sql  # the schema's: LiteMaaS's types differ (gateway/store/litemaas.py)
        self._last_used_sql = last_used_sql
        self._config = config
        self._clock = clock
        self._rows: dict[tuple[date, str, str], Row] = {}
        self._periods: dict[tuple[str, str], float | None] = {}  # (user, model) -> the subscription's reset_at
        self._last_used: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    def record(self, meter: Meter) -> None:
        if not meter.served:
            return
        now = self._clock()
        day = datetime.fromtimestamp(now, timezone.utc).date()
        row = self._rows.get((day, meter.key_id, meter.model))
        if row is None:
            if len(self._rows) >= self._config.max_pending_rows:
                self._rows.pop(next(iter(self._rows)))
                USAGE_ROWS_DROPPED.inc()
            row = self._rows[(day, meter.key_id, meter.model)] = [meter.user_id, 0, 0, 0, 0.0]
        row[1] += 1
        row[2] += meter.prompt_tokens
        row[3] += meter.completion_tokens
        row[4] += meter.spend
        self._periods[(meter.user_id, meter.model)] = meter.reset_at
        self._last_used[meter.key_id] = now

    async def flush(self) -> int:
        """Write what was recorded; the number of rows written."""
        async with self._lock:
            rows, periods, last_used = self._rows, self._periods, self._last_used
            if not rows:
                return 0
            self._rows, self._periods, self._last_used = {}, {}, {}
            now = self._clock()
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.executemany(UPSERT, [(day, key, r[0], model, r[1], r[2], r[3], r[4])
                                                    for (day, key, model), r in rows.items()])
                    await conn.executemany(self._used_sql, [(user, model, _period_day(now, reset_at))
                                                  for (user, model), reset_at in periods.items()])
                    await conn.executemany(self._last_used_sql, [(key, datetime.fromtimestamp(t, timezone.utc))
                                                       for key, t in last_used.items()])
            except Exception as exc:  # kept for the next flush (asyncpg and OSError alike)
                log.warning("usage flush failed, %d rows kept for the next one: %s", len(rows), type(exc).__name__)
                self._merge(rows, periods, last_used)
                raise
            return len(rows)

    def _merge(self, rows: dict, periods: dict, last_used: dict) -> None:
        for ident, old in rows.items():
            row = self._rows.setdefault(ident, [old[0], 0, 0, 0, 0.0])
            for i in range(1, 5):
                row[i] += old[i]
        for ident, value in periods.items():
            self._periods.setdefault(ident, value)
        for key, t in last_used.items():
            self._last_used[key] = max(t, self._last_used.get(key, t))
        while len(self._rows) > self._config.max_pending_rows:
            self._rows.pop(next(iter(self._rows)))
            USAGE_ROWS_DROPPED.inc()

    async def _run(self) -> None:
        pruned = 0.0
        while True:
            await asyncio.sleep(self._config.flush_seconds)
            try:
                await self.flush()
                if self._clock() - pruned >= RETENTION_EVERY_SECONDS:
                    await self._pool.execute("DELETE FROM usage_daily WHERE day < (now() AT TIME ZONE 'utc')::date - $1::int",
                                             self._config.retention_days)
                    pruned = self._clock()
            except Exception:  # logged by flush; the retention runs again next time
                continue

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-flush")

    async def close(self) -> None:
        """Stop the periodic flush and write the rest (the lifespan's end, before the pool closes)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.flush()
        except Exception:
            log.error("usage records lost at shutdown: the database could not be written")


def _period_day(now: float, reset_at: float | None) -> date:
    """The first UTC day of the quota period (a calendar month, or a month from reset_at) holding `now`."""
    return datetime.fromtimestamp(period(now, reset_at)[0], timezone.utc).date()
