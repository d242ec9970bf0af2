"""Postgres: the pool, the migrations and the one query the hot path needs.

asyncpg exceptions and OSErrors are mapped to StoreUnavailableError here, so the
rest of the gateway deals with one error for "the database cannot answer".
"""

from __future__ import annotations

import logging
import math
from importlib import resources
from typing import Any

import asyncpg

from gateway.config import DatabaseConfig
from gateway.errors import StoreUnavailableError
from gateway.store.keyquery import key_query
from policies import periods
from policies.limits import NO_LIMITS, Limits, canonical
from policies.records import KeyRecord, SubscriptionRecord

log = logging.getLogger("maas_gateway.db")

INVALIDATION_CHANNEL = "maas_gateway_invalidate"
MIGRATION_LOCK = 0x6D616173  # "maas": one migrator at a time across instances

KEY_QUERY = key_query("native")  # everything a decision needs about one key (gateway/store/keyquery.py)

# Everything that means "the database cannot answer now" (InternalClientError: the
# connection died mid-query).
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)
CONNECT_TIMEOUT_SECONDS = 3.0


def record_from_row(row: Any) -> KeyRecord:
    subscriptions = {
        model: SubscriptionRecord(model, status, expiry, *_subscription_limits(limits, duration))
        for model, status, expiry, limits, duration in zip(
            row["sub_models"], row["sub_statuses"], row["sub_expiries"],
            row["sub_limits"] or [None] * len(row["sub_models"]), row["sub_durations"])
    }
    return KeyRecord(
        key_id=row["id"],
        user_id=row["user_id"],
        is_active=row["is_active"],
        revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
        user_active=row["user_active"],
        models=tuple(row["models"]),
        subscriptions=subscriptions,
        limits=canonical(Limits(rpm_limit=row["rpm_limit"], tpm_limit=row["tpm_limit"],
                                max_parallel_requests=row["max_parallel_requests"], max_budget=row.get("key_max_budget"),
                                budget_duration=periods.custom(row.get("key_budget_duration")))),
        user_limits=canonical(Limits(rpm_limit=row["user_rpm_limit"], tpm_limit=row["user_tpm_limit"],
                                     max_parallel_requests=row["user_max_parallel_requests"],
                                     max_budget=row["user_max_budget"],
                                     budget_duration=periods.custom(row["user_budget_duration"]))),
        model_limits=_model_limits(row.get("key_model_limits") or ()),
    )


def server_settings(config: DatabaseConfig) -> dict[str, str]:
    settings = {"application_name": "maas-gateway"}
    if config.schema == "litemaas":  # the gateway's own tables live in their own schema (gateway/store/litemaas.py)
        settings["search_path"] = 'maas_gateway, "$user", public'
    return settings


def _subscription_limits(values: Any, duration: str | None) -> tuple[Limits, float | None]:
    """(limits, reset_at) from [quota_requests, quota_tokens, max_budget, reset_at] and budget_duration
    (see KEY_QUERY; a calendar month is kept as None: policies.periods.custom)."""
    if values is None:
        return NO_LIMITS, None
    requests, tokens, budget, reset_at, *rates = values  # LiteMaaS's subscriptions: rpm_limit, tpm_limit too
    rpm, tpm = rates or (None, None)
    limits = Limits(quota_requests=_int(requests), quota_tokens=_int(tokens), max_budget=budget,
                    budget_duration=periods.custom(duration), rpm_limit=_int(rpm), tpm_limit=_int(tpm))
    return canonical(limits), reset_at


def _number(value: float | str | None) -> float | None:
    """A limit read from a row; None for NULL and for what no counter can hold (LiteMaaS's JSON
    limits are free-form: 1e400 reads as infinity, NaN as NaN; either would fail the key's lookup)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) and abs(number) < 2**53 else None


def _int(value: float | str | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _model_limits(rows: Any) -> dict[str, Limits]:
    """A key's own limits per model from [model, rpm, tpm, budget, budget period] text arrays (LiteMaaS's
    model_rpm_limit, model_tpm_limit, model_max_budget JSON; values that are not numbers are ignored)."""
    limits = {}
    for model, rpm, tpm, budget, duration in rows:
        found = Limits(rpm_limit=_int(rpm), tpm_limit=_int(tpm), max_budget=_number(budget),
                       budget_duration=periods.custom(duration))
        if found.rpm_limit is not None or found.tpm_limit is not None or found.max_budget is not None:
            limits[model] = found
    return limits


async def create_pool(url: str, config: DatabaseConfig) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(
            url,
            min_size=config.pool_min,
            max_size=config.pool_max,
            command_timeout=config.statement_timeout_ms / 1000,
            timeout=CONNECT_TIMEOUT_SECONDS,  # an unreachable host must not hold requests for a minute
            server_settings=server_settings(config),
        )
    except DB_ERRORS as exc:
        raise StoreUnavailableError(detail="database unreachable", retry_after=1) from exc


async def load_key(pool: asyncpg.Pool, key_hash: str, acquire_timeout: float | None = None,
                   query: str = KEY_QUERY) -> KeyRecord | None:
    """The key's record by SHA-256 hex, or None when no such key exists (`query`: this schema's KEY_QUERY).

    A busy pool is waited for at most `acquire_timeout` seconds (database.acquire_timeout_ms):
    a flood of cold keys gets 503s rather than a queue that every later lookup waits behind."""
    try:
        async with pool.acquire(timeout=acquire_timeout) as conn:
            row = await conn.fetchrow(query, key_hash)
    except DB_ERRORS as exc:
        raise StoreUnavailableError(retry_after=1) from exc
    return None if row is None else record_from_row(row)


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every migration shipped with the package, in order."""
    folder = resources.files("gateway.store") / "migrations"
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name, p.read_text()) for p in files]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not applied yet; returns their names. Safe to run concurrently."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS gateway_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM gateway_migrations")}
        for name, sql in migrations():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO gateway_migrations (name) VALUES ($1)", name)
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def migrate_url(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
