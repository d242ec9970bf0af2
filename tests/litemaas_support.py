"""A LiteMaaS database for tests: LiteMaaS's own DDL (tests/fixtures/litemaas_schema.sql) in a
fresh database, and rows written the way LiteMaaS writes them.

LiteMaaS's ways, from its backend services: users come from OAuth sign-in (UUID ids,
oauth_provider/oauth_id); a subscription starts `pending` when its model has
`restricted_access`, else `active`; an API key is a LiteLLM virtual key: LiteMaaS stores its
plaintext in `lite_llm_key_value`, `key_hash` = SHA-256 hex of it, `key_prefix` = its first 7
characters, and one `api_key_models` row per model; a revocation sets `is_active = false` and
`revoked_at`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.store.keys import hash_key

SCHEMA_SQL = Path(__file__).resolve().parent / "fixtures" / "litemaas_schema.sql"

# The tables LiteMaaS owns that the gateway reads or watches: their columns must never change.
LITEMAAS_TABLES = ("users", "teams", "models", "subscriptions", "api_keys", "api_key_models")


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


async def create_litemaas_database(server_url: str) -> str:
    """A new database on the test server holding LiteMaaS's schema; returns its URL."""
    name = f"litemaas_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = database_url(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCHEMA_SQL.read_text())
    finally:
        await conn.close()
    return url


async def drop_database(server_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def columns(conn: Any) -> list[tuple]:
    """Every column of LiteMaaS's tables, as information_schema describes it."""
    rows = await conn.fetch(
        """SELECT table_schema, table_name, column_name, ordinal_position, data_type, character_maximum_length,
                  numeric_precision, numeric_scale, is_nullable, column_default
           FROM information_schema.columns WHERE table_name = ANY($1::text[])
           ORDER BY table_schema, table_name, ordinal_position""",
        list(LITEMAAS_TABLES),
    )
    return [tuple(r) for r in rows]


# The columns LiteMaaS keeps for usage, which the gateway's usage batches write (gateway/store/litemaas.py),
# and updated_at, which LiteMaaS's own trigger moves when they are written.
WRITTEN_BY_GATEWAY = {"subscriptions": ("used_requests", "used_tokens", "updated_at"),
                      "api_keys": ("last_used_at", "updated_at")}


async def rows(conn: Any, *, usage_columns: bool = True) -> dict[str, list[tuple]]:
    """Every row of LiteMaaS's tables; without `usage_columns`, those of WRITTEN_BY_GATEWAY left out."""
    found = {}
    for table in LITEMAAS_TABLES:
        names = [r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 "
            "ORDER BY ordinal_position", table)]
        left_out = () if usage_columns else WRITTEN_BY_GATEWAY.get(table, ())
        selected = ", ".join(f'"{n}"' for n in names if n not in left_out)
        found[table] = [tuple(r) for r in await conn.fetch(f"SELECT {selected} FROM {table} ORDER BY 1, 2")]
    return found


async def add_model(conn: Any, model_id: str, *, restricted: bool = False) -> None:
    """As LiteMaaS's model sync writes it (the LiteLLM model name is the id)."""
    await conn.execute(
        """INSERT INTO models (id, name, provider, restricted_access, litellm_model_id, metadata)
           VALUES ($1, $1, 'openai', $2, $3, '{"source": "litellm"}') ON CONFLICT (id) DO NOTHING""",
        model_id, restricted, str(uuid.uuid4()),
    )


async def add_user(conn: Any, *, is_active: bool = True, oauth_id: str | None = None) -> uuid.UUID:
    """As LiteMaaS's OAuth sign-in writes it (`oauth_id`: the provider's subject, random by default)."""
    sub = oauth_id or secrets.token_hex(8)
    return await conn.fetchval(
        """INSERT INTO users (username, email, full_name, oauth_provider, oauth_id, roles, max_budget,
                              tpm_limit, rpm_limit, last_login_at, is_active, sync_status)
           VALUES ($1, $2, 'Test User', 'openshift', $3, ARRAY['user'], 100, 10000, 60, NOW(), $4, 'synced')
           RETURNING id""",
        f"user-{sub}", f"user-{sub}@example.com", sub, is_active,
    )


async def subscribe(conn: Any, user_id: uuid.UUID, model_id: str) -> uuid.UUID:
    """As LiteMaaS's subscription service: `pending` for a restricted model, else `active`."""
    restricted = await conn.fetchval("SELECT restricted_access FROM models WHERE id = $1", model_id)
    return await conn.fetchval(
        """INSERT INTO subscriptions (user_id, model_id, status, quota_requests, quota_tokens, reset_at)
           VALUES ($1, $2, $3, 10000, 1000000, date_trunc('month', now()) + interval '1 month') RETURNING id""",
        user_id, model_id, "pending" if restricted else "active",
    )


@dataclass
class LiteMaaSKey:
    key: str  # the LiteLLM virtual key, as the user holds it
    id: uuid.UUID
    user_id: uuid.UUID


async def add_key(conn: Any, user_id: uuid.UUID, models: list[str], *, key: str | None = None,
                  legacy_subscription: uuid.UUID | None = None) -> LiteMaaSKey:
    """As LiteMaaS's api-key service writes a key LiteLLM generated (`legacy_subscription`: an old
    single-model key, bound by subscription_id and without api_key_models rows)."""
    key = key or "sk-" + secrets.token_urlsafe(16)  # LiteLLM's format
    async with conn.transaction():
        key_id = await conn.fetchval(
            """INSERT INTO api_keys (user_id, name, key_hash, key_prefix, expires_at, is_active, lite_llm_key_value,
                                     litellm_key_alias, max_budget, current_spend, tpm_limit, rpm_limit,
                                     last_sync_at, sync_status, metadata, subscription_id)
               VALUES ($1, 'my key', $2, $3, NULL, true, $4, $5, NULL, 0, NULL, NULL, now(), 'synced',
                       '{"created_by": "litemaas"}', $6)
               RETURNING id""",
            user_id, hash_key(key), key[:7], key, f"my-key_{secrets.token_hex(4)}", legacy_subscription,
        )
        for model in models:
            await conn.execute("INSERT INTO api_key_models (api_key_id, model_id) VALUES ($1, $2)", key_id, model)
    return LiteMaaSKey(key, key_id, user_id)


async def revoke(conn: Any, key_id: uuid.UUID) -> None:
    """As LiteMaaS revokes a key."""
    await conn.execute(
        "UPDATE api_keys SET is_active = false, revoked_at = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE id = $1",
        key_id,
    )


@pytest.fixture
async def litemaas_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh database built from LiteMaaS's schema, dropped after the test."""
    url = await create_litemaas_database(postgres_url)
    yield url
    await drop_database(postgres_url, url)


@pytest.fixture
async def conn(litemaas_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to that database, as LiteMaaS would write through."""
    connection = await asyncpg.connect(litemaas_url)
    yield connection
    await connection.close()
