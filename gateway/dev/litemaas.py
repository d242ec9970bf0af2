"""`maas-gateway dev --litemaas` (`make run-litemaas`): the demo on a LiteMaaS-shaped database.

An empty database first gets LiteMaaS's schema (tests/fixtures/litemaas_schema.sql, written
from LiteMaaS's migrations; like the demo LiteLLM config, it is read from the checkout). Then
the demo user, models, subscriptions and a key are written the way LiteMaaS writes them (UUID
ids; the key's SHA-256 in key_hash and its plaintext in lite_llm_key_value; one api_key_models
row per model), and the gateway's own schema and NOTIFY triggers are installed, as
`maas-gateway migrate --litemaas-triggers` does. The gateway then serves with
database.schema litemaas: revoke the key in SQL as LiteMaaS would and it is refused at once.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncpg

from gateway.store import litemaas
from gateway.config import DatabaseConfig
from gateway.store.keys import hash_key

SCHEMA_SQL = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "litemaas_schema.sql"
DEMO_OAUTH = ("dev", "demo")  # (oauth_provider, oauth_id) of the demo user


async def seed_litemaas_demo(database_url: str, all_models: tuple[str, ...], key_models: tuple[str, ...]) -> str:
    """LiteMaaS's schema when the database is empty, the demo rows, a fresh key; returns the key."""
    conn = await asyncpg.connect(database_url)
    try:
        if await litemaas.shape(conn) == "empty":
            await conn.execute(SCHEMA_SQL.read_text())
        await litemaas.prepare_database(database_url, DatabaseConfig(schema="litemaas"), apply=True, triggers=True)
        key = "sk-" + secrets.token_urlsafe(16)
        async with conn.transaction():
            user_id = await conn.fetchval(
                "SELECT id FROM users WHERE oauth_provider = $1 AND oauth_id = $2", *DEMO_OAUTH
            ) or await conn.fetchval(
                """INSERT INTO users (username, email, oauth_provider, oauth_id, roles, last_login_at, sync_status)
                   VALUES ('demo', 'demo@example.com', $1, $2, ARRAY['user'], now(), 'synced') RETURNING id""",
                *DEMO_OAUTH,
            )
            for model in all_models:
                await conn.execute(
                    "INSERT INTO models (id, name, provider) VALUES ($1, $1, 'openai') ON CONFLICT (id) DO NOTHING", model
                )
            for model in key_models:
                await conn.execute(
                    """INSERT INTO subscriptions (user_id, model_id, status, quota_requests, quota_tokens)
                       VALUES ($1, $2, 'active', 0, 0) ON CONFLICT (user_id, model_id) DO NOTHING""",
                    user_id, model,
                )
            key_id = await conn.fetchval(
                """INSERT INTO api_keys (user_id, name, key_hash, key_prefix, is_active, lite_llm_key_value, sync_status)
                   VALUES ($1, 'make run-litemaas demo', $2, $3, true, $4, 'synced') RETURNING id""",
                user_id, hash_key(key), key[:7], key,
            )
            await conn.executemany(
                "INSERT INTO api_key_models (api_key_id, model_id) VALUES ($1, $2)", [(key_id, m) for m in key_models]
            )
        return key
    finally:
        await conn.close()
