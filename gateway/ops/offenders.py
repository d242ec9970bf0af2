"""Misuse monitoring (the seed's "API Key Misuse Detection"): who gets refused most.

    refused_key(key_id)      a MODEL_ACCESS_DENIED / SUBSCRIPTION_INACTIVE (enforced or shadow)
    failed_address(address)  an unknown or malformed key from this client address
    flush()                  every FLUSH_SECONDS: the counts into Redis, one sorted set per kind and
                             UTC hour (ZINCRBY, kept HOURS_KEPT hours), shared by every instance; then
                             maas_gateway_top_offender_refusals{kind} = the most refusals of any one
                             key / address this hour (the alert's input)
    top(hours, limit)        the keys and addresses with the most refusals over the last `hours`
                             (GET /admin/v1/offenders)

The hot path only adds to a dict. Without Redis (one instance) the hourly counts stay in-process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Callable

from gateway.ops.metrics import TOP_OFFENDER

log = logging.getLogger("maas_gateway.offenders")

PREFIX = "maas:offenders:"
FLUSH_SECONDS = 5.0
HOURS_KEPT = 48
MAX_TRACKED = 10_000  # distinct keys / addresses counted between two flushes
KINDS = ("key", "address")


class Offenders:
    def __init__(self, redis: Any | None, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self._pending: dict[str, Counter] = {kind: Counter() for kind in KINDS}
        self._local: dict[tuple[str, int], Counter] = {}  # without Redis: (kind, hour) -> counts
        self._task: asyncio.Task | None = None

    def refused_key(self, key_id: str) -> None:
        self._add("key", key_id)

    def failed_address(self, address: str) -> None:
        self._add("address", address)

    def _add(self, kind: str, name: str) -> None:
        pending = self._pending[kind]
        if name in pending or len(pending) < MAX_TRACKED:
            pending[name] += 1

    async def flush(self) -> None:
        hour = int(self._clock() // 3600)
        pending, self._pending = self._pending, {kind: Counter() for kind in KINDS}
        if self._redis is None:
            for kind, counts in pending.items():
                self._local.setdefault((kind, hour), Counter()).update(counts)
            self._local = {k: v for k, v in self._local.items() if k[1] > hour - HOURS_KEPT}
        elif any(pending.values()):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for kind, counts in pending.items():
                        name = f"{PREFIX}{kind}:{hour}"
                        for member, count in counts.items():
                            pipe.zincrby(name, count, member)
                        if counts:
                            pipe.expire(name, HOURS_KEPT * 3600)
                    await pipe.execute()
            except Exception as exc:  # lost counts only weaken a monitor; never the hot path
                log.warning("offender counts not written to redis: %s", type(exc).__name__)
        for kind in KINDS:
            ranked = await self._ranked(kind, hour, hour, 1)
            TOP_OFFENDER.labels(kind).set(ranked[0][1] if ranked else 0)

    async def _ranked(self, kind: str, first: int, last: int, limit: int) -> list[tuple[str, int]]:
        total: Counter = Counter()
        if self._redis is None:
            for hour in range(first, last + 1):
                total.update(self._local.get((kind, hour), {}))
        else:
            try:
                for hour in range(first, last + 1):
                    for member, score in await self._redis.zrange(f"{PREFIX}{kind}:{hour}", 0, -1, withscores=True):
                        total[member.decode() if isinstance(member, bytes) else member] += int(score)
            except Exception as exc:
                log.warning("offender counts not read from redis: %s", type(exc).__name__)
        return total.most_common(limit)

    async def top(self, hours: int, limit: int) -> list[dict]:
        """[{"kind": "key" | "address", "id", "refused"}], most refused first, over the last `hours`
        (at most HOURS_KEPT): the `limit` top keys and the `limit` top addresses."""
        await self.flush()
        hour = int(self._clock() // 3600)
        first = hour - min(hours, HOURS_KEPT) + 1
        found = [{"kind": kind, "id": name, "refused": count}
                 for kind in KINDS for name, count in await self._ranked(kind, first, hour, limit)]
        return sorted(found, key=lambda entry: (-entry["refused"], entry["kind"], entry["id"]))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    def start(self) -> None:
        for kind in KINDS:
            TOP_OFFENDER.labels(kind)  # exported from the start (0 until the first flush)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="offenders-flush")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
