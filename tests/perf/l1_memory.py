"""Bytes the key cache holds per cached key, in the bench's shape (target: RSS with 100,000 keys <= 150 MB).

    python -m tests.perf.l1_memory [--keys 100000]            # in-process, ~20 s
    python -m tests.perf.l1_memory --serve [--keys 100000]    # `maas-gateway serve` as the bench runs it, ~4 min

In-process: a KeyStore (no Redis) fills its L1 through `lookup()`, as the gateway does on a cold key,
from Postgres-shaped rows made fresh for each query as asyncpg makes them (the bench's seed: two keys
per user, each user subscribed to the two models its keys hold, no limits). Reports the bytes per
cached key that tracemalloc counts (what Python asked for) and that the process's RSS grew by (what
the allocator rounded that to), and the live bytes by kind of object.

--serve: Postgres, Redis and the fast fake upstream from gateway/dev/services.py, the bench's seed
(tests/perf/bench.py `seed`), one `maas-gateway serve` worker, the keys sent once each by wrk
(the bench's memory measurement, without the rest of the bench); RSS of the worker before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import secrets
import tracemalloc
import uuid
from collections import Counter
from typing import Any, AsyncIterator

from gateway.config import CacheConfig
from gateway.store.keys import KeyStore, hash_key, key_digest
from tests.perf.measure import rss_bytes

MODELS = ["gpt-4o-mini", "gpt-4o"]  # tests/perf/bench.py BENCH_MODELS
KEYS_PER_USER = 2


def fresh(text: str) -> str:
    """A copy of `text` that is not the same object, as each row asyncpg decodes brings its own strings."""
    return text.encode().decode()


def row(index: int) -> dict[str, Any]:
    """Key `index` as db.KEY_QUERY returns it for the bench's seed."""
    models = [fresh(m) for m in MODELS]
    return {"id": str(uuid.uuid4()), "user_id": f"bench-user-{index // KEYS_PER_USER:06d}",
            "key_prefix": "sk-" + secrets.token_urlsafe(3)[:4], "is_active": True, "revoked_at": None,
            "expires_at": None, "user_active": True, "models": models, "sub_models": [fresh(m) for m in MODELS],
            "sub_statuses": [fresh("active") for _ in MODELS], "sub_expiries": [None] * len(MODELS),
            "sub_limits": [[None, None, None, None] for _ in MODELS], "sub_durations": [None] * len(MODELS),
            "rpm_limit": None, "tpm_limit": None, "max_parallel_requests": None, "user_rpm_limit": None,
            "user_tpm_limit": None, "user_max_parallel_requests": None, "user_max_budget": None,
            "user_budget_duration": None}


class Rows:
    """A stand-in for the asyncpg pool: `fetchrow(query, key_hash)` answers the row of that key, made now."""

    def __init__(self, hashes: list[str]) -> None:
        self._index = {h: i for i, h in enumerate(hashes)}

    @contextlib.asynccontextmanager
    async def acquire(self, timeout: float | None = None) -> AsyncIterator["Rows"]:
        yield self

    async def fetchrow(self, query: str, key_hash: str) -> dict[str, Any]:
        return row(self._index[key_hash])


async def fill(store: KeyStore, keys: list[str]) -> None:
    for key in keys:
        await store.lookup(key_digest(key))  # as a request does: the digest made from the key it brings


def in_process(count: int) -> None:
    keys = ["sk-bench-" + secrets.token_urlsafe(24) for _ in range(count)]
    warm = ["sk-warm-" + secrets.token_urlsafe(24) for _ in range(1_000)]
    for traced in (False, True):
        store = KeyStore(Rows([hash_key(k) for k in keys + warm]), None, CacheConfig())
        asyncio.run(fill(store, warm))  # the sharing tables and interned names exist before the measurement
        gc.collect()
        if traced:
            tracemalloc.start(3)
            before_snapshot = tracemalloc.take_snapshot()
        before = tracemalloc.get_traced_memory()[0] if traced else rss_bytes(os.getpid())
        asyncio.run(fill(store, keys))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if traced else rss_bytes(os.getpid())
        assert store.size == count + len(warm)
        if not traced:
            print(f"RSS growth: {(after - before) / count:.0f} bytes per cached key ({count:,} keys)")
            del store
            continue
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        print(f"tracemalloc: {(after - before) / count:.0f} bytes per cached key; live, by where it was allocated:")
        sites: Counter[str] = Counter()
        for stat in snapshot.compare_to(before_snapshot, "traceback"):
            if stat.size_diff > count:  # at least a byte per key
                where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(stat.traceback))
                sites[where] += stat.size_diff
        for where, size in sites.most_common(12):
            print(f"  {size / count:6.0f}  {where}")


def serve(count: int) -> None:
    import time

    from tests.perf import bench
    from tests.perf.inprocess import started

    settings = bench.Settings(keys=count, cold_keys=0, revocation_trials=1)
    with started(settings, "l1-memory-") as (runner, postgres, redis, seeded, port):  # ~650 MB of Postgres data
        work = runner.work
        env = {**os.environ, "DATABASE_URL": postgres.url, "REDIS_URL": redis.url,
               "LITELLM_URL": f"http://127.0.0.1:{port}", "LITELLM_API_KEY": bench.SERVICE_KEY}
        gateway, gw_port = runner.start_gateway("gateway", env, bench.PROXY_CPUS, workers=1, key=seeded.key)
        url = f"http://127.0.0.1:{gw_port}{bench.PATH}"
        runner.wrk.run(url, body=bench.PLAIN_BODY, key=seeded.key, duration=5)  # as the bench's earlier runs
        entries, rss = runner.cache_entries(gw_port), rss_bytes(gateway.pid)
        keys_file = work / "fill-keys.txt"
        keys_file.write_text("\n".join(seeded.fill_keys) + "\n")
        wanted = len(seeded.fill_keys) + 1
        run = runner.wrk.run(url, body=bench.PLAIN_BODY, connections=64, duration=900, targets=[gateway.pid],
                             keys_file=keys_file, until=lambda: runner.cache_entries(gw_port) >= wanted)
        filled, rss_filled = runner.cache_entries(gw_port), rss_bytes(gateway.pid)
        time.sleep(1)
        print(f"serve: {run['requests']:,} requests at {run['rps']:,.0f}/s ({run['errors']} errors), L1 entries "
              f"{entries:,} -> {filled:,}; RSS {rss / 2**20:.1f} -> {rss_filled / 2**20:.1f} MiB "
              f"({rss_filled / 1e6:.0f} MB): {(rss_filled - rss) / max(1, filled - entries):.0f} bytes per cached key")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.l1_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--serve", action="store_true", help="measure a `maas-gateway serve` worker instead")
    args = parser.parse_args()
    (serve if args.serve else in_process)(args.keys)


if __name__ == "__main__":
    main()
