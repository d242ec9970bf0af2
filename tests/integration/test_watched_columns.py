"""Every column the key query reads is watched: a change to it, written by SQL, notifies the gateways.

A gateway drops a cached key record when Postgres announces a change (a trigger per table on
channel maas_gateway_invalidate: gateway/store/migrations/ for the native schema,
gateway/store/litemaas.py's TRIGGERS_SQL on a LiteMaaS database). A column the key query reads
that no trigger watches would let every instance decide on a stale record for cache.ttl_seconds.
The columns are taken from the query text itself (gateway/store/keyquery.py: `k.`, `u.`, `s.`,
`m.` references that are columns of their tables), so a column added to the query without a
trigger fails here. Each one is then written (`SET c = c`: an UPDATE OF trigger fires on the
columns named, changed or not) on a real database and the announcement must arrive.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import asyncpg
import pytest

from gateway.store import db
from gateway.store import litemaas as litemaas_mode
from gateway.config import DatabaseConfig
from gateway.store.keyquery import key_query
from tests import litemaas_support as litemaas
from tests.support import seed_key

pytestmark = pytest.mark.integration

ALIASES = {"k": "api_keys", "u": "users", "s": "subscriptions", "m": "api_key_models"}
REFERENCE = re.compile(r"\b([kusm])\.([a-z_]+)\b")
# Ids never change (primary keys).
NOT_DECISIONS = {("api_keys", "id"), ("users", "id"), ("subscriptions", "id")}
ANNOUNCED_WITHIN = 5.0  # seconds; NOTIFY is delivered at commit (the 1 s contract is tested end to end elsewhere)


async def read_columns(conn: asyncpg.Connection, schema: str) -> list[tuple[str, str]]:
    """(table, column) pairs the key query reads that are columns of those tables (the LiteMaaS query's
    `m.model` is a JSON key set's alias, not api_key_models)."""
    existing = {(r["table_name"], r["column_name"]) for r in await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()")}
    referenced = {(ALIASES[alias], column) for alias, column in REFERENCE.findall(key_query(schema))}
    return sorted((referenced & existing) - NOT_DECISIONS)


async def unannounced(conn: asyncpg.Connection, listener: asyncpg.Connection, where: dict[str, tuple[str, Any]],
                      columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The columns whose write (`SET c = c` on the row `where` names per table) announced nothing."""
    notes: asyncio.Queue = asyncio.Queue()

    def heard(*args: Any) -> None:
        notes.put_nowait(json.loads(args[3]))

    await listener.add_listener(db.INVALIDATION_CHANNEL, heard)
    missing = []
    try:
        for table, column in columns:
            while not notes.empty():
                notes.get_nowait()
            key_column, value = where[table]
            updated = await conn.execute(f'UPDATE {table} SET "{column}" = "{column}" WHERE "{key_column}" = $1', value)
            assert updated != "UPDATE 0", (table, column)
            try:
                await asyncio.wait_for(notes.get(), ANNOUNCED_WITHIN)
            except TimeoutError:
                missing.append((table, column))
    finally:
        await listener.remove_listener(db.INVALIDATION_CHANNEL, heard)
    return missing


async def test_every_column_the_native_key_query_reads_is_announced_when_written(pool, postgres_url):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await pool.execute("INSERT INTO api_key_models (api_key_id, model_id) VALUES ($1, 'gpt-4o-mini') ON CONFLICT DO NOTHING",
                       seeded.key_id)
    async with pool.acquire() as conn:
        columns = await read_columns(conn, "native")
        assert {t for t, _ in columns} == set(ALIASES.values()), columns  # the reading of the query works
        assert ("users", "rpm_limit") in columns and ("subscriptions", "quota_tokens") in columns
        listener = await asyncpg.connect(postgres_url)
        try:
            where = {"api_keys": ("id", seeded.key_id), "users": ("id", seeded.user_id),
                     "subscriptions": ("user_id", seeded.user_id), "api_key_models": ("api_key_id", seeded.key_id)}
            assert await unannounced(conn, listener, where, columns) == []
        finally:
            await listener.close()


async def test_every_column_the_litemaas_key_query_reads_is_announced_when_written(litemaas_url, conn):
    await litemaas_mode.prepare_database(litemaas_url, DatabaseConfig(schema="litemaas"), apply=True, triggers=True)
    for model in ("gpt-4o-mini",):
        await litemaas.add_model(conn, model)
    user_id = await litemaas.add_user(conn)
    await litemaas.subscribe(conn, user_id, "gpt-4o-mini")
    key = await litemaas.add_key(conn, user_id, ["gpt-4o-mini"])
    columns = await read_columns(conn, "litemaas")
    assert {t for t, _ in columns} == set(ALIASES.values()), columns
    # the columns LiteMaaS added for limits and budgets are among them
    assert {("api_keys", "model_rpm_limit"), ("api_keys", "budget_duration"), ("subscriptions", "tpm_limit"),
            ("users", "budget_duration")} <= set(columns)
    listener = await asyncpg.connect(litemaas_url)
    try:
        where = {"api_keys": ("id", key.id), "users": ("id", user_id), "subscriptions": ("user_id", user_id),
                 "api_key_models": ("api_key_id", key.id)}
        assert await unannounced(conn, listener, where, columns) == []
    finally:
        await listener.close()
