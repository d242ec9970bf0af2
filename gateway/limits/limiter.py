"""Rate limits, quotas and budgets on the hot path: the counting around policies/limits.py.

    checks(record, model, now)   the limits that apply (policies.limits.plan, kept per key and model
                                 while they hold: their minute and periods); () costs no I/O
    admit(record, checks, ...)   ONE Redis round trip: a Lua script reads every counter, decides
                                 and charges the request (1 request, a parallel slot) atomically;
                                 raises RateLimitedError / QuotaExceededError (enforce), or returns
                                 the Meter that carries the x-ratelimit-* headers. A quota or
                                 budget counter Redis lost (a restart without persistence, an
                                 eviction) costs one Postgres query and a second call: it is seeded
                                 with the period's recorded usage (gateway/limits/quota_seeds.py)
    finish(meter)                after the answer: tokens and spend charged, the parallel slot
                                 released (one script call, queued: off the response's path)

Both scripts' calls go through one ScriptPipeline (gateway/limits/pipelining.py): the calls made
while a pipeline is out leave together in the next one, in the order they were made, each its own
script execution and verdict.

Every counter of one request lives under the user's hash tag (`maas:lim:{u:<user id>}:...`), so
Redis Cluster keeps them in one slot and the script may touch them all. Parallel slots are sorted
sets of request tokens scored by when they expire (an instance that dies frees its slots after
litellm.request_timeout_seconds). Without Redis (REDIS_URL unset: one instance) the counters are
in-process, period counters seeded from usage_daily when the process starts counting them; with Redis failing they are in-process too, each limit divided by
limits.expected_instances, logged and counted (maas_gateway_limiter_fallbacks_total), and Redis is
tried again after REDIS_BACKOFF_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.config import LimitsConfig
from gateway.errors import QuotaExceededError, RateLimitedError
from gateway.ops.metrics import LIMIT_REFUSALS, LIMITER_FALLBACKS
from gateway.limits import quota_seeds
from gateway.limits.local import LOCAL_MAX_COUNTERS, WINDOW_TTL_MS, LocalCounters, ttl_ms
from gateway.limits.pipelining import ScriptPipeline
from gateway.limits.usage import usage_counts
from policies.limits import (MINUTE, NO_LIMITS, Check, Kind, Limits, Verdict, canonical, effective, format_reset, plan,
                             refusal_detail, valid, verdict, weight)
from policies.records import KeyRecord, Mode

log = logging.getLogger("maas_gateway.limiter")

PREFIX = "maas:lim:"
REDIS_BACKOFF_SECONDS = 5.0
PRICES_REFRESH_SECONDS = 30.0
PLANS_KEPT = 10_000  # (key, model) pairs whose checks are kept for their minute; beyond, all are dropped

# KEYS: two per check (its counter, and the previous minute's for a per-minute check, else the same).
# ARGV: force ("1": charge even when refused: shadow mode), now, token, slot expiry, then per check
# type ("w" per minute, "c" period counter, "p" parallel slots), limit, cost, weight, ttl in ms, seed.
# A period counter that is missing (Redis restarted empty, or evicted it) is SET NX to its seed, the
# usage Postgres holds for the period (gateway/limits/quota_seeds.py); without a seed ("") the script charges
# nothing and answers {-1, i, ...}: the indexes of the checks to seed, for a second call.
# Else answers {admitted, current1, previous1, current2, ...} as strings (Lua numbers would be truncated).
ADMIT_SCRIPT = """
local n = (#ARGV - 4) / 6
local counts = {}
local missing = {-1}
local admitted = true
for i = 1, n do
  local b = 4 + (i - 1) * 6
  local kind, limit, cost, weight = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local current, previous = 0, 0
  if kind == 'p' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i - 1], '-inf', ARGV[2])
    current = redis.call('ZCARD', KEYS[2 * i - 1])
  else
    local raw = redis.call('GET', KEYS[2 * i - 1])
    if not raw and kind == 'c' then
      if ARGV[b + 6] == '' then
        missing[#missing + 1] = i
      else
        redis.call('SET', KEYS[2 * i - 1], ARGV[b + 6], 'NX', 'PX', ARGV[b + 5])
        raw = ARGV[b + 6]
      end
    end
    current = tonumber(raw or '0')
    if kind == 'w' then previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0') end
  end
  counts[2 * i] = tostring(current)
  counts[2 * i + 1] = tostring(previous)
  local used = previous * weight + current
  if cost > 0 then
    if used + cost > limit then admitted = false end
  elseif used >= limit then
    admitted = false
  end
end
if #missing > 1 then return missing end
if admitted or ARGV[1] == '1' then
  for i = 1, n do
    local b = 4 + (i - 1) * 6
    local kind, cost, ttl = ARGV[b + 1], tonumber(ARGV[b + 3]), ARGV[b + 5]
    if kind == 'p' then
      redis.call('ZADD', KEYS[2 * i - 1], ARGV[4], ARGV[3])
      redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
    elseif cost > 0 then
      redis.call('INCRBY', KEYS[2 * i - 1], cost)
      redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
    end
  end
end
counts[1] = admitted and 1 or 0
return counts
"""

# After the answer, one call: KEYS the counters; ARGV the request's token, then per key op ("r": release
# the parallel slot, "w": add to a minute's counter, "c": add to a period counter that exists: one that
# Redis lost is seeded from Postgres at the next admission, which then holds this usage or not at all),
# amount, ttl in ms.
SETTLE_SCRIPT = """
for i = 1, #KEYS do
  local op, amount, ttl = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if op == 'r' then
    redis.call('ZREM', KEYS[i], ARGV[1])
  elseif op == 'w' or redis.call('EXISTS', KEYS[i]) == 1 then
    if string.find(amount, '[.eE]') then
      redis.call('INCRBYFLOAT', KEYS[i], amount)
    else
      redis.call('INCRBY', KEYS[i], amount)
    end
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
"""


@dataclass
class Meter:
    """One request's accounting: its limits and headers, what `finish` charges after the answer,
    and what gateway/limits/usage_recorder.py records."""

    key_id: str
    user_id: str
    model: str
    checks: tuple[Check, ...] = ()
    token: str = ""
    shared: bool = False  # counted in Redis (else in-process)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    reset_at: float | None = None  # the subscription's: where its quota periods (months) start
    inject_usage: bool = False  # the gateway asked LiteLLM for the stream's usage chunk: strip it
    served: bool = False  # a 2xx answer began: a request to record
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend: float = 0.0

    def measure(self, tail: bytes | bytearray, request_bytes: int, events: int) -> None:
        """The answer's tokens: LiteLLM's `usage` (gateway/limits/usage.py); for a stream cut before its usage,
        a quarter of the request's bytes for the prompt and one completion token per event forwarded."""
        counts = usage_counts(tail)
        if counts is None and events:
            counts = (request_bytes // 4, events)
        if counts is not None:
            self.prompt_tokens, self.completion_tokens = counts


_HEADERS = tuple((f"x-ratelimit-limit-{kind}".encode(), f"x-ratelimit-remaining-{kind}".encode(),
                  f"x-ratelimit-reset-{kind}".encode()) for kind in ("requests", "tokens"))


def rate_limit_headers(result: Verdict) -> list[tuple[bytes, bytes]]:
    """x-ratelimit-* for the binding limits (requests, tokens); none for a kind no limit counts."""
    headers = []
    for (limit, remaining, reset), binding in zip(_HEADERS, (result.requests, result.tokens)):
        if binding is not None:
            headers += [(limit, b"%d" % binding.limit), (remaining, b"%d" % binding.remaining),
                        (reset, format_reset(binding.reset_seconds).encode())]
    return headers


class Limiter:
    def __init__(self, config: LimitsConfig, redis: Any | None, slot_seconds: float,
                 clock: Callable[[], float] = time.time, pool: Any | None = None, acquire_timeout: float = 1.0) -> None:
        defaults = config.defaults
        self._key_default = canonical(Limits(**vars(defaults.key)))  # NO_LIMITS itself when none is set:
        self._user_default = canonical(Limits(**vars(defaults.user)))  # effective() is then the identity
        self._subscription_default = canonical(Limits(**vars(defaults.subscription)))
        self._any_default = self._key_default.any() or self._user_default.any() or self._subscription_default.any()
        self._instances = config.expected_instances
        self._redis = redis
        self._script = redis.register_script(ADMIT_SCRIPT) if redis is not None else None
        self._settle_script = redis.register_script(SETTLE_SCRIPT) if redis is not None else None
        self._pipeline = ScriptPipeline(redis) if redis is not None else None  # both scripts' calls, coalesced
        self._pool = pool  # usage_daily: the seeds of period counters Redis lost (None: seeds are 0)
        self._acquire_timeout = acquire_timeout  # database.acquire_timeout_ms: the longest wait for a seed's connection
        self._slot_seconds = slot_seconds  # a parallel slot's longest life (the longest answer)
        self._clock = clock
        self._local = LocalCounters()
        self._redis_skip_until = 0.0
        # (key id, model) -> (record, from, until, checks): plan()'s answer while it holds (policies.limits.valid)
        self._plans: dict[tuple[str, str | None], tuple[KeyRecord, float, float, tuple[Check, ...]]] = {}
        self.prices: dict[str, tuple[float, float]] = {}  # model -> (input, output) cost per token

    # -- the hot path -------------------------------------------------------

    def checks(self, record: KeyRecord, model: str | None, now: float) -> tuple[Check, ...]:
        """The limits on this request; () (the common case: no limit anywhere) without building anything."""
        subscription = record.subscriptions.get(model) if model is not None else None
        sub_limits = subscription.limits if subscription is not None else NO_LIMITS
        key_model = record.model_limits.get(model, NO_LIMITS) if record.model_limits and model is not None else NO_LIMITS
        if (not self._any_default and record.limits is NO_LIMITS and record.user_limits is NO_LIMITS
                and sub_limits is NO_LIMITS and key_model is NO_LIMITS):
            return ()
        planned = self._plans.get((record.key_id, model))
        if planned is not None and planned[0] is record and planned[1] <= now < planned[2]:
            return planned[3]  # the same record (a changed key is a new one), the same minute and periods
        checks = plan(record.key_id, model or "", effective(record.limits, self._key_default),
                      effective(record.user_limits, self._user_default), effective(sub_limits, self._subscription_default),
                      now, subscription.reset_at if subscription is not None else None, key_model)
        if len(self._plans) >= PLANS_KEPT:
            self._plans.clear()
        self._plans[(record.key_id, model)] = (record, *valid(checks), checks)
        return checks

    async def admit(self, record: KeyRecord, model: str | None, checks: tuple[Check, ...], now: float,
                    mode: Mode) -> Meter:
        token = os.urandom(8).hex() if any(c.kind is Kind.PARALLEL for c in checks) else ""  # a slot's name
        shadow = mode is Mode.SHADOW
        counted = await self._admit_shared(record.user_id, record.key_id, model or "", checks, now, token, shadow)
        shared = counted is not None
        if counted is None:
            if self._redis is None and self._pool is not None:
                await self._seed_local(record.user_id, record.key_id, model or "", checks, now)
            scaled = tuple(c._replace(limit=_share(c.limit, self._instances)) if self._redis is not None else c for c in checks)
            admitted, counts = self._local.admit(scaled, self._names(record.user_id, checks), now, token, shadow)
            checks = scaled
        else:
            admitted, counts = counted
        result = verdict(checks, counts, now)
        meter = Meter(record.key_id, record.user_id, model or "", checks, token, shared, rate_limit_headers(result),
                      _reset_at(record, model))
        if admitted:
            return meter
        refused = result.refused_by or checks[0]  # the script and the verdict agree but for float rounding
        if shadow:
            LIMIT_REFUSALS.labels(refused.scope.value, refused.kind.value, "shadow").inc()
            return meter
        LIMIT_REFUSALS.labels(refused.scope.value, refused.kind.value, "refused").inc()
        error: RateLimitedError | QuotaExceededError
        if refused.kind.quota:
            error = QuotaExceededError(detail=refusal_detail(refused))
            error.extra_headers = (*QuotaExceededError.extra_headers, *meter.headers)
        else:
            error = RateLimitedError(detail=refusal_detail(refused), retry_after=result.retry_after)
            error.extra_headers = tuple(meter.headers)
        raise error

    def unlimited(self, record: KeyRecord, model: str | None) -> Meter:
        """The Meter of a request no limit applies to: usage is still recorded."""
        return Meter(record.key_id, record.user_id, model or "", reset_at=_reset_at(record, model))

    def finish(self, meter: Meter) -> None:
        """After the answer: its spend; charge its tokens and spend, release its parallel slots (in the background)."""
        now = self._clock()
        tokens = meter.prompt_tokens + meter.completion_tokens
        price_in, price_out = self.prices.get(meter.model, (0.0, 0.0))
        spend = meter.spend = meter.prompt_tokens * price_in + meter.completion_tokens * price_out
        if not meter.checks:
            return
        updates: list[tuple[str, str, float, int]] = []  # (op, name, amount, ttl ms)
        for check in meter.checks:
            name = self._name(meter.user_id, check.counter)
            if check.kind is Kind.PARALLEL:
                updates.append(("r", name, 0, 0))
            elif check.kind is Kind.TOKENS_PER_MINUTE and tokens:
                minute_name = name.rsplit(":", 1)[0] + f":{int(now // MINUTE)}"  # the minute the answer ended in
                updates.append(("w", minute_name, tokens, WINDOW_TTL_MS))
            elif check.kind is Kind.QUOTA_TOKENS and tokens:
                updates.append(("c", name, tokens, ttl_ms(check, now)))
            elif check.kind is Kind.BUDGET and spend:
                updates.append(("c", name, spend, ttl_ms(check, now)))
        if not updates:
            return
        if not meter.shared:
            for op, name, amount, ttl in updates:
                if op == "r":
                    self._local.release(name, meter.token)
                else:
                    self._local.add(name, amount, now, ttl / 1000)
            return
        self._settle(meter.token, updates)

    # -- Redis ----------------------------------------------------------------

    def _name(self, user_id: str, counter: str) -> str:
        return f"{PREFIX}{{u:{user_id}}}:{counter}"

    def _names(self, user_id: str, checks: tuple[Check, ...]) -> list[tuple[str, str]]:
        return [(self._name(user_id, c.counter), self._name(user_id, c.previous or c.counter)) for c in checks]

    async def _admit_shared(self, user_id: str, key_id: str, model: str, checks: tuple[Check, ...], now: float, token: str,
                            force: bool) -> tuple[bool, tuple[tuple[float, float], ...]] | None:
        if self._script is None or now < self._redis_skip_until:
            if self._script is not None:
                LIMITER_FALLBACKS.inc()
            return None
        keys: list[str] = []
        static: list[list[str]] = []  # each check's arguments but its seed
        tag = f"{PREFIX}{{u:{user_id}}}:"
        for check in checks:
            keys += [tag + check.counter, tag + (check.previous or check.counter)]
            kind = "p" if check.kind is Kind.PARALLEL else "w" if check.previous is not None else "c"
            static.append([kind, repr(float(check.limit)), str(check.kind.cost), repr(weight(check, now)), str(ttl_ms(check, now))])
        seeds: dict[int, str] = {} if self._pool is not None else {i: "0" for i in range(len(checks))}
        for _ in range(len(checks) + 1):  # each call that finds counters missing seeds at least one more
            args: list[str] = ["1" if force else "0", repr(now), token, repr(now + self._slot_seconds)]
            for i, part in enumerate(static):
                args += part
                args.append(seeds.get(i, ""))
            try:
                answer = await self._pipeline.call(self._script, keys, args)  # type: ignore[union-attr]
            except Exception as exc:  # redis-py raises many types; all mean "count here for now"
                self._redis_failed(exc, now)
                LIMITER_FALLBACKS.inc()
                return None
            if int(answer[0]) != -1:
                values = [float(v) for v in answer[1:]]
                return bool(int(answer[0])), tuple(zip(values[0::2], values[1::2]))
            missing = [int(i) - 1 for i in answer[1:]]
            try:
                found = await quota_seeds.seeds(self._pool, user_id, key_id, model, [checks[i] for i in missing],
                                                self._acquire_timeout)
            except Exception as exc:  # asyncpg and OSError alike: counted here until Postgres answers
                log.warning("quota counters missing in Redis and Postgres unreachable to seed them, "
                            "counting this request in-process: %s", type(exc).__name__)
                LIMITER_FALLBACKS.inc()
                return None
            seeds.update((i, _number(value)) for i, value in zip(missing, found))
        raise AssertionError("the admit script kept finding unseeded counters")

    async def _seed_local(self, user_id: str, key_id: str, model: str, checks: tuple[Check, ...], now: float) -> None:
        """Without Redis (one instance): period counters this process does not hold yet start from usage_daily."""
        names = self._names(user_id, checks)
        missing = [i for i, c in enumerate(checks) if c.starts is not None
                   and (not self._local.has(names[i][0], now) or names[i][0] in self._local.unseeded)]
        if not missing:
            return
        try:
            found = await quota_seeds.seeds(self._pool, user_id, key_id, model, [checks[i] for i in missing],
                                            self._acquire_timeout)
        except Exception as exc:  # counted from 0 until Postgres answers, then seeded (logged)
            log.warning("quota counters not seeded, Postgres unreachable: %s", type(exc).__name__)
            if len(self._local.unseeded) < LOCAL_MAX_COUNTERS:
                self._local.unseeded.update(names[i][0] for i in missing)
            return
        for i, value in zip(missing, found):
            self._local.seed(names[i][0], value, now, ttl_ms(checks[i], now) / 1000)

    def _redis_failed(self, exc: BaseException, now: float) -> None:
        if now >= self._redis_skip_until:
            log.warning("redis unavailable, counting limits in-process (each limit / %d) for %.0fs: %s",
                        self._instances, REDIS_BACKOFF_SECONDS, type(exc).__name__)
        self._redis_skip_until = now + REDIS_BACKOFF_SECONDS

    def _settle(self, token: str, updates: list[tuple[str, str, float, int]]) -> None:
        args: list[str] = [token]
        for op, _, amount, ttl in updates:
            args += [op, _number(amount), str(ttl)]
        self._pipeline.send(self._settle_script, [name for _, name, _, _ in updates], args,  # type: ignore[union-attr]
                            self._settle_failed)

    def _settle_failed(self, exc: BaseException) -> None:
        self._redis_failed(exc, self._clock())  # a lost slot expires; lost tokens are not charged

    # -- lifecycle ----------------------------------------------------------

    async def load_prices(self, pool: Any) -> None:
        """Model prices for spend, from `models` (input/output_cost_per_token)."""
        rows = await pool.fetch("SELECT id, input_cost_per_token::float8 AS i, output_cost_per_token::float8 AS o "
                                "FROM models WHERE input_cost_per_token IS NOT NULL OR output_cost_per_token IS NOT NULL")
        self.prices = {r["id"]: (r["i"] or 0.0, r["o"] or 0.0) for r in rows}

    async def refresh_prices(self, pool: Any) -> None:
        """load_prices every PRICES_REFRESH_SECONDS: a price change counts from then on."""
        while True:
            with contextlib.suppress(Exception):
                await self.load_prices(pool)
            await asyncio.sleep(PRICES_REFRESH_SECONDS)

    async def settle(self) -> None:
        """Wait for the charges still in flight (at shutdown, before Redis closes)."""
        if self._pipeline is not None:
            await self._pipeline.drain()


def _reset_at(record: KeyRecord, model: str | None) -> float | None:
    """The subscription's reset_at: where its quota periods (months) start; None: calendar months."""
    subscription = record.subscriptions.get(model) if model is not None else None
    return None if subscription is None else subscription.reset_at


def _number(value: float) -> str:
    """A counter's amount as Redis reads it: an int for requests and tokens (INCRBY), a float for spend."""
    return str(value) if isinstance(value, int) else repr(float(value))


def _share(limit: float, instances: int) -> float:
    """One instance's part of a limit while Redis is down: counts rounded up (a limit above 0 keeps
    at least 1), budgets divided."""
    if isinstance(limit, int):
        return math.ceil(limit / instances)
    return limit / instances
