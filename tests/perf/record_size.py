"""Bytes a cached key record holds, as the L1 cache keeps one per key (bench target: RSS per cached key).

    python -m tests.perf.record_size [--records 20000]

Builds records the way Postgres rows become records (gateway/store/db.py record_from_row: a key with
one subscription, no limits, nothing per model) and measures what they hold with tracemalloc.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
import uuid

from gateway.store import db


def row() -> dict:
    return {"id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "key_prefix": "sk-abcd", "is_active": True,
            "revoked_at": None, "expires_at": None, "user_active": True, "models": ["gpt-4o-mini"],
            "sub_models": ["gpt-4o-mini"], "sub_statuses": ["active"], "sub_expiries": [None],
            "sub_limits": [[None, None, None, None]], "sub_durations": ["monthly"],
            "rpm_limit": None, "tpm_limit": None, "max_parallel_requests": None,
            "user_rpm_limit": None, "user_tpm_limit": None, "user_max_parallel_requests": None,
            "user_max_budget": None, "user_budget_duration": None}


def bytes_per_record(count: int) -> float:
    rows = [row() for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        records = [db.record_from_row(r) for r in rows]
        return (tracemalloc.get_traced_memory()[0] - before) / len(records)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.record_size", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    print(f"{bytes_per_record(parser.parse_args().records):.0f} bytes per record")


if __name__ == "__main__":
    main()
