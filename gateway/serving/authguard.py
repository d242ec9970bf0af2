"""The failed-authentication limiter's I/O: the client's address, the counts, the refusals.

    address(scope)            the peer, or X-Forwarded-For's client behind server.trusted_proxies
    refusal(address)          429 now, without I/O, while this worker knows the address is refused
    failed(address)           count one failure (Redis: INCR + EXPIRE in one MULTI, so every
                              instance counts in the same window; else in-process); the 429 when
                              this failure took the address over the limit, else None

The decision (window, limit, Retry-After) is policies/auth_failures.py's. A refusal is
remembered in-process until its window ends, so a refused address costs no I/O at all; an
instance learns of a refusal decided elsewhere at that address's next failure there.
Redis failing falls back to the in-process count (per worker) for REDIS_BACKOFF_SECONDS.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from gateway.config import SecurityConfig
from gateway.errors import RateLimitedError
from policies.auth_failures import blocked_until, retry_after, window_index
from policies.forwarded import Network, client_address

log = logging.getLogger("maas_gateway.authguard")

REDIS_PREFIX = "maas:authfail:"
REDIS_BACKOFF_SECONDS = 5.0
MAX_ADDRESSES = 10_000  # in-process counts and refusals kept; the oldest go first


def _bounded_set(table: dict, key: str, value: Any) -> None:
    if key not in table and len(table) >= MAX_ADDRESSES:
        table.pop(next(iter(table)))
    table[key] = value


class AuthGuard:
    def __init__(
        self,
        config: SecurityConfig,
        networks: tuple[Network, ...],
        redis: Any | None,
        clock: Callable[[], float] = time.time,  # wall clock: windows are named alike on every instance
    ) -> None:
        self._limit = config.failed_auth_limit
        self._window = config.failed_auth_window_seconds
        self._networks = networks
        self._redis = redis
        self._clock = clock
        self._refused: dict[str, float] = {}  # address -> until
        self._counts: dict[str, tuple[int, int]] = {}  # address -> (window, failures): without Redis
        self._redis_skip_until = 0.0

    def address(self, scope: dict) -> str:
        client = scope.get("client")
        peer = client[0] if client else ""
        if not self._networks:
            return peer
        forwarded = [v.decode("latin-1") for n, v in scope["headers"] if n == b"x-forwarded-for"]
        return client_address(peer, forwarded, self._networks)

    def refusal(self, address: str) -> RateLimitedError | None:
        until = self._refused.get(address)
        if until is None:
            return None
        now = self._clock()
        if until <= now:
            del self._refused[address]
            return None
        return _limited(until, now)

    async def failed(self, address: str) -> RateLimitedError | None:
        now = self._clock()
        window = window_index(now, self._window)
        count = await self._count_shared(address, window, now)
        if count is None:
            count = self._count_here(address, window)
        until = blocked_until(count, self._limit, now, self._window)
        if until is None:
            return None
        _bounded_set(self._refused, address, until)
        return _limited(until, now)

    def _count_here(self, address: str, window: int) -> int:
        seen_window, count = self._counts.get(address, (window, 0))
        count = count + 1 if seen_window == window else 1
        _bounded_set(self._counts, address, (window, count))
        return count

    async def _count_shared(self, address: str, window: int, now: float) -> int | None:
        if self._redis is None or now < self._redis_skip_until:
            return None
        key = f"{REDIS_PREFIX}{{{address}}}:{window}"  # one key: one hash slot
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, int(self._window) + 1)
                count, _ = await pipe.execute()
        except Exception as exc:  # redis-py raises many types; all mean "count here for now"
            if now >= self._redis_skip_until:
                log.warning("redis unavailable, counting failed authentications in-process for %.0fs: %s",
                            REDIS_BACKOFF_SECONDS, type(exc).__name__)
            self._redis_skip_until = now + REDIS_BACKOFF_SECONDS
            return None
        return int(count)


def _limited(until: float, now: float) -> RateLimitedError:
    return RateLimitedError(detail="too many failed authentications from this address", retry_after=retry_after(until, now))
