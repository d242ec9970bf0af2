"""Rate limits, quotas and budgets: which apply, whether a request is admitted, what to tell the client.

    Limits          one scope's limits (key, user or subscription); None: no limit, 0: nothing allowed
    effective()     a scope's own limits, each null field replaced by the configured default
    plan()          the checks that apply to one request at `now` (none: no counter is touched)
    verdict()       given what each check has counted: admitted, or which check refuses and for
                    how long; and the binding limits for the x-ratelimit-* headers

Per-minute limits are sliding-window counters (the `limits` library's): the current UTC minute's
count plus the previous minute's weighted by how much of it still lies in the last 60 s. A
request costs 1 request at admission; tokens and spend are charged after the answer, so a token
or spend check admits while what is already charged is below the limit (the overshoot is at most
the tokens of the requests in flight). Quota and budget periods are each scope's `budget_duration`
(policies/periods.py; default a calendar month in UTC), counted from the subscription's `reset_at`
when it has one.

Time is a parameter; the counting (Redis, or in-process when Redis is down) is gateway/limits/limiter.py's.
"""

from __future__ import annotations

import calendar
import enum
import math
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

from policies import periods

MINUTE = 60.0
MAX_RETRY_AFTER = 60  # seconds: the OpenAI SDK retries a 429 whose Retry-After is at most this


@dataclass(frozen=True, slots=True)
class Limits:
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    quota_requests: int | None = None
    quota_tokens: int | None = None
    max_budget: float | None = None
    # the period of this scope's quotas and budget, as LiteLLM spells it (policies/periods.py); None:
    # a calendar month (records keep only another period: periods.custom)
    budget_duration: str | None = None

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


NO_LIMITS = Limits()


def canonical(limits: Limits) -> Limits:
    """NO_LIMITS itself when no field is set: the limiter's fast path for the common case (no limit
    anywhere) is an identity test, so records loaded with nothing set must hold this one object."""
    return NO_LIMITS if not limits.any() else limits


def effective(own: Limits | None, default: Limits) -> Limits:
    """`own`'s fields, each None taken from `default`."""
    if own is None or own is NO_LIMITS:
        return default
    if default is NO_LIMITS:
        return own
    return Limits(*(getattr(own, f.name) if getattr(own, f.name) is not None else getattr(default, f.name)
                    for f in fields(Limits)))


class Scope(enum.Enum):
    KEY = "key"
    USER = "user"
    SUBSCRIPTION = "subscription"
    KEY_MODEL = "key_model"  # one key's limits for one model (LiteMaaS's model_rpm_limit and the like)


class Kind(enum.Enum):
    """What a check counts; `window` kinds count per minute, `period` kinds per quota period.

    Each member's properties are plain attributes, set once (the hot path reads them per check):
    per_minute  counted per minute (sliding window)
    quota       refusals answer QUOTA_EXCEEDED (the rest RATE_LIMITED)
    cost        what admission charges: one request, or nothing (tokens and spend come after the answer)
    header      the x-ratelimit-* kind it binds ("requests", "tokens"), or None
    """

    REQUESTS_PER_MINUTE = "rpm_limit"
    TOKENS_PER_MINUTE = "tpm_limit"
    PARALLEL = "max_parallel_requests"
    QUOTA_REQUESTS = "quota_requests"
    QUOTA_TOKENS = "quota_tokens"
    BUDGET = "max_budget"

    def __init__(self, value: str) -> None:
        self.per_minute = value in ("rpm_limit", "tpm_limit")
        self.quota = value in ("quota_requests", "quota_tokens", "max_budget")
        self.cost = 1 if value in ("rpm_limit", "max_parallel_requests", "quota_requests") else 0
        self.header = ("requests" if value in ("rpm_limit", "quota_requests")
                       else "tokens" if value in ("tpm_limit", "quota_tokens") else None)


_WORDS = {
    (Scope.KEY, Kind.REQUESTS_PER_MINUTE): "requests per minute of this API key",
    (Scope.KEY, Kind.TOKENS_PER_MINUTE): "tokens per minute of this API key",
    (Scope.KEY, Kind.PARALLEL): "concurrent requests of this API key",
    (Scope.KEY, Kind.BUDGET): "budget of this API key",
    (Scope.KEY_MODEL, Kind.REQUESTS_PER_MINUTE): "requests per minute of this API key for this model",
    (Scope.KEY_MODEL, Kind.TOKENS_PER_MINUTE): "tokens per minute of this API key for this model",
    (Scope.KEY_MODEL, Kind.BUDGET): "budget of this API key for this model",
    (Scope.SUBSCRIPTION, Kind.REQUESTS_PER_MINUTE): "requests per minute of your subscription to this model",
    (Scope.SUBSCRIPTION, Kind.TOKENS_PER_MINUTE): "tokens per minute of your subscription to this model",
    (Scope.USER, Kind.REQUESTS_PER_MINUTE): "requests per minute of your account",
    (Scope.USER, Kind.TOKENS_PER_MINUTE): "tokens per minute of your account",
    (Scope.USER, Kind.PARALLEL): "concurrent requests of your account",
    (Scope.USER, Kind.BUDGET): "budget of your account",
    (Scope.SUBSCRIPTION, Kind.QUOTA_REQUESTS): "request quota of your subscription to this model",
    (Scope.SUBSCRIPTION, Kind.QUOTA_TOKENS): "token quota of your subscription to this model",
    (Scope.SUBSCRIPTION, Kind.BUDGET): "budget of your subscription to this model",
}
_CHECKED = {
    Scope.KEY: (Kind.REQUESTS_PER_MINUTE, Kind.TOKENS_PER_MINUTE, Kind.PARALLEL, Kind.BUDGET),
    Scope.KEY_MODEL: (Kind.REQUESTS_PER_MINUTE, Kind.TOKENS_PER_MINUTE, Kind.BUDGET),
    Scope.USER: (Kind.REQUESTS_PER_MINUTE, Kind.TOKENS_PER_MINUTE, Kind.PARALLEL, Kind.BUDGET),
    Scope.SUBSCRIPTION: (Kind.REQUESTS_PER_MINUTE, Kind.TOKENS_PER_MINUTE, Kind.QUOTA_REQUESTS, Kind.QUOTA_TOKENS,
                         Kind.BUDGET),
}


class Check(NamedTuple):  # NamedTuple, not a frozen dataclass: made per request, ~4x cheaper to make
    """One limit that applies to a request, and the counter that holds it.

    `counter` names the counter within its scope ("key:<id>:rpm:<minute>" and the like);
    per-minute checks also read `previous` (the last minute's counter) weighted by `weight(check,
    now)`. `ends` is when the counter's window or period ends (POSIX seconds); `starts` when a period
    check's period began (None for the others). A check holds no time of day: plan() answers the
    same checks all through a minute (and a period), so the limiter keeps them that long."""

    scope: Scope
    kind: Kind
    limit: float
    counter: str
    ends: float
    previous: str | None = None
    starts: float | None = None

    @property
    def words(self) -> str:
        return _WORDS[(self.scope, self.kind)]


def month_start(now: float) -> float:
    """The start of the calendar month (UTC) of `now`."""
    t = datetime.fromtimestamp(now, timezone.utc)
    return datetime(t.year, t.month, 1, tzinfo=timezone.utc).timestamp()


def add_months(moment: float, months: int) -> float:
    """`moment` plus whole months, the day clamped to the month's end (Jan 31 + 1 month: Feb 28/29)."""
    t = datetime.fromtimestamp(moment, timezone.utc)
    index = t.year * 12 + (t.month - 1) + months
    year, month = divmod(index, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return t.replace(year=year, month=month + 1, day=day).timestamp()


def period(now: float, reset_at: float | None, budget_duration: str | None = None) -> tuple[float, float]:
    """The period [start, end) holding `now`: of `budget_duration` (a budget's; None, as for quotas: a
    calendar month in UTC), counted from `reset_at` when set (policies/periods.py)."""
    return periods.bounds(now, periods.duration_of(budget_duration), reset_at)


def plan(
    key_id: str,
    model: str,
    key: Limits,
    user: Limits,
    subscription: Limits,
    now: float,
    reset_at: float | None = None,
    key_model: Limits = NO_LIMITS,
) -> tuple[Check, ...]:
    """Every check that applies to one request of `key_id` for `model` (limits already `effective`);
    `key_model`: the key's own limits for `model`."""
    checks: list[Check] = []
    minute = int(now // MINUTE)
    minute_ends = (minute + 1) * MINUTE
    for scope, limits, name in ((Scope.KEY, key, f"key:{key_id}"), (Scope.KEY_MODEL, key_model, f"key:{key_id}:m:{model}"),
                                (Scope.USER, user, "user"), (Scope.SUBSCRIPTION, subscription, f"sub:{model}")):
        if limits is NO_LIMITS:
            continue
        for kind in _CHECKED[scope]:
            limit = getattr(limits, kind.value)
            if limit is None:
                continue
            if kind.per_minute:
                tag = "rpm" if kind is Kind.REQUESTS_PER_MINUTE else "tpm"
                checks.append(Check(scope, kind, limit, f"{name}:{tag}:{minute}", minute_ends,
                                    f"{name}:{tag}:{minute - 1}"))
            elif kind is Kind.PARALLEL:
                checks.append(Check(scope, kind, limit, f"{name}:par", math.inf))
            else:
                # quotas: calendar months or months from reset_at; a budget: its scope's budget_duration
                start, end = period(now, reset_at if scope is Scope.SUBSCRIPTION else None,
                                    limits.budget_duration if kind is Kind.BUDGET else None)
                tag = {Kind.QUOTA_REQUESTS: "req", Kind.QUOTA_TOKENS: "tok", Kind.BUDGET: "spend"}[kind]
                checks.append(Check(scope, kind, limit, f"{name}:{tag}:{int(start)}", end, starts=start))
    return tuple(checks)


def seed_day(starts: float) -> date:
    """The first UTC day wholly inside a period that began at `starts`: a period counter lost by Redis is
    seeded from the usage recorded per UTC day since then (a period that begins mid-day loses its first
    day's part; calendar months and LiteMaaS's reset_at begin at midnight)."""
    day = datetime.fromtimestamp(starts, timezone.utc)
    whole = day.date()
    return whole if day == datetime(whole.year, whole.month, whole.day, tzinfo=timezone.utc) else whole + timedelta(days=1)


def weight(check: Check, now: float) -> float:
    """How much of the previous minute still lies in the last 60 s at `now` (per-minute checks; else 0)."""
    return 1.0 - (now - (check.ends - MINUTE)) / MINUTE if check.previous is not None else 0.0


def valid(checks: tuple[Check, ...]) -> tuple[float, float]:
    """[from, until): the times at which plan() answers these same checks (their minute, their periods)."""
    starts = [c.ends - MINUTE if c.previous is not None else c.starts for c in checks]
    return max((s for s in starts if s is not None), default=-math.inf), min((c.ends for c in checks), default=math.inf)


def used(check: Check, current: float, previous: float, now: float) -> float:
    """What `check` counts at `now`: the current counter, plus the previous minute's weighted (per-minute checks)."""
    return previous * weight(check, now) + current if check.previous is not None else current


def fits(check: Check, count: float) -> bool:
    """Is one more request admitted under `check` with `count` already counted? A check that admission
    charges nothing for (tokens, spend) admits while the count is below its limit."""
    cost = check.kind.cost
    return count + cost <= check.limit if cost else count < check.limit


class Binding(NamedTuple):
    """The x-ratelimit-* values for requests or for tokens: the check with the least remaining."""

    limit: int
    remaining: int
    reset_seconds: float


class Verdict(NamedTuple):
    admitted: bool
    refused_by: Check | None = None  # the first refusing check: quotas before rate limits
    retry_after: int | None = None  # RATE_LIMITED's Retry-After; None for a quota
    requests: Binding | None = None
    tokens: Binding | None = None


def verdict(checks: tuple[Check, ...], counts: tuple[tuple[float, float], ...], now: float) -> Verdict:
    """Decide on `checks` given each one's (current, previous) counts before this request's charge."""
    refusals: list[tuple[Check, float]] = []
    requests: Binding | None = None
    tokens: Binding | None = None
    for check, (current, previous) in zip(checks, counts):
        count = used(check, current, previous, now)
        if not fits(check, count):
            refusals.append((check, count))
        header = check.kind.header
        if header is not None:
            charged = count + check.kind.cost
            binding = Binding(int(check.limit), max(0, math.floor(check.limit - charged)),
                              _reset(check, current + check.kind.cost, previous, now))
            if header == "requests":
                if requests is None or binding.remaining < requests.remaining:
                    requests = binding
            elif tokens is None or binding.remaining < tokens.remaining:
                tokens = binding
    if not refusals:
        return Verdict(True, requests=requests, tokens=tokens)
    refusals.sort(key=lambda r: not r[0].kind.quota)
    check, count = refusals[0]
    wait = None if check.kind.quota else retry_after(check, counts[checks.index(check)], now)
    return Verdict(False, check, wait, requests, tokens)


def _reset(check: Check, current: float, previous: float, now: float) -> float:
    """Seconds until `check`'s count is back to zero (the header's reset)."""
    if check.previous is None:
        return max(0.0, check.ends - now)
    if current > 0:
        return check.ends - now + MINUTE
    return check.ends - now if previous > 0 else 0.0


def retry_after(check: Check, counts: tuple[float, float], now: float) -> int:
    """Whole seconds until a request refused by a rate limit would be admitted (1..MAX_RETRY_AFTER)."""
    current, previous = counts
    if check.kind is Kind.PARALLEL or check.previous is None:
        return 1
    cost = check.kind.cost
    target = check.limit - cost  # the count must fall to this (strictly below, for tokens)
    left = check.ends - now
    if current <= target and previous > 0:
        # the previous minute's weight falls by 1/60 a second until the count fits
        wait = (used(check, current, previous, now) - target) / previous * MINUTE
        wait = wait if wait <= left else left
    elif current > 0 and target >= 0:
        # this minute's count becomes the previous one, then decays
        wait = left + (1 - target / current) * MINUTE
    else:
        wait = MAX_RETRY_AFTER
    seconds = math.ceil(wait) + (0 if cost else 1)
    return min(MAX_RETRY_AFTER, max(1, seconds))


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes x-ratelimit-reset-*: `1s`, `6m0s`, `1h2m3s`, `20ms`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def refusal_detail(check: Check) -> str:
    """Which limit refused, and for a quota when it resets; for the error's message."""
    limit = f"{check.limit:g}" if check.kind is not Kind.BUDGET else f"${check.limit:g}"
    if check.kind.quota:
        when = datetime.fromtimestamp(check.ends, timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC" if check.ends % 60 == 0 else "%Y-%m-%d %H:%M:%S UTC")
        return f"the {check.words} ({limit}) is used up; it resets at {when}"
    return f"the {check.words} ({limit}) is reached"
