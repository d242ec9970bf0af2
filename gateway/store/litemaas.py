"""LiteMaaS mode (`database.schema: litemaas`): the gateway on an existing LiteMaaS database.

    LiteMaaS's tables     read as LiteMaaS made them (UUID ids, VARCHAR model ids, nullable
                          flags, its limit and quota columns: KEY_QUERY); the gateway never adds,
                          drops or alters a column, and writes only the usage columns LiteMaaS
                          keeps for it (subscriptions.used_requests / used_tokens,
                          api_keys.last_used_at: USED_SQL, LAST_USED_SQL)
    schema maas_gateway   the gateway's own state: its migrations bookkeeping and the native
                          migrations that hold gateway state only (GATEWAY_STATE_MIGRATIONS: the
                          LiteLLM outbox, usage_daily), run
                          with search_path maas_gateway; the NOTIFY function. The gateway's pools
                          search it first (db.server_settings)
    NOTIFY triggers       the one addition to LiteMaaS's tables, by explicit steps only:
                          `maas-gateway migrate --litemaas-triggers` / `--remove-litemaas-triggers`

prepare_database() runs before the pool opens: it finds which schema DATABASE_URL holds
(shape()) and refuses to start when it is not the one `database.schema` names, before any
migration could touch a table, then migrates (the gateway's own schema only, in this mode).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from gateway.store import db
from gateway.config import ConfigError, DatabaseConfig
from gateway.errors import AdminError, StoreUnavailableError
from gateway.store.keyquery import key_query

log = logging.getLogger("maas_gateway.litemaas")

GATEWAY_SCHEMA = "maas_gateway"
# Native migrations that create only the gateway's own tables (no LiteMaaS table is named).
GATEWAY_STATE_MIGRATIONS = ("003_litellm_outbox.sql", "006_usage_daily.sql")

# What the key query reads and the usage batches write; a database lacking one of these is not one the gateway can serve.
REQUIRED_COLUMNS = {
    "users": {"id", "is_active", "rpm_limit", "tpm_limit", "max_budget", "budget_duration"},
    "models": {"id"},
    "subscriptions": {"id", "user_id", "model_id", "status", "expires_at", "quota_requests", "quota_tokens",
                      "max_budget", "reset_at", "used_requests", "used_tokens", "budget_duration", "rpm_limit", "tpm_limit"},
    "api_keys": {"id", "user_id", "subscription_id", "key_hash", "key_prefix", "is_active", "revoked_at",
                 "expires_at", "lite_llm_key_value", "rpm_limit", "tpm_limit", "max_parallel_requests", "last_used_at",
                 "max_budget", "budget_duration", "model_rpm_limit", "model_tpm_limit", "model_max_budget"},
    "api_key_models": {"api_key_id", "model_id"},
}

# LiteMaaS's flags are nullable: a NULL is not `true`, and LiteMaaS's own queries (`is_active = true`)
# treat it as inactive too. A key made before LiteMaaS had api_key_models is bound to its
# subscription's model (subscription_id), as LiteMaaS's key validation reads it.
#
# Limits and quotas, in the gateway's model (policies/limits.py: NULL inherits `limits.defaults`,
# 0 allows nothing):
# - users.rpm_limit / tpm_limit / max_budget and api_keys.rpm_limit / tpm_limit /
#   max_parallel_requests as they are: NULL is "none set" in LiteMaaS too (its UI shows
#   "Unlimited"), and a number is the limit LiteMaaS gives LiteLLM for that user or key.
#   LiteMaaS's users table has DEFAULT rpm_limit 60, tpm_limit 10000, max_budget 100: those hold.
# - subscriptions.quota_requests / quota_tokens are NOT NULL DEFAULT 0 in LiteMaaS, and 0 there
#   means "no quota set", not "nothing allowed": its subscription service writes explicit quotas
#   (10000 requests, 1M tokens unless asked; its API's minimum is 1) and rejects a quota <= 0,
#   while the admin's "assign a model to a user's key" flow (backend/src/routes/admin-users.ts)
#   INSERTs an `active` subscription without quotas, i.e. 0, that is meant to be used
#   (rh-aiservices-bu/litemaas at f6b748f). So 0 reads as NULL. Its max_budget is written
#   `maxBudget || null`: a 0 reads as NULL too.
# - subscriptions.reset_at is LiteMaaS's *next* reset (the 1st of next month); the gateway's
#   quota periods are its budget_duration ('monthly': months) counted from it (policies.limits.period).
# - subscriptions.rpm_limit / tpm_limit: per minute, per user and model; 0 reads as NULL (LiteMaaS
#   writes `tpmLimit || null`).
# - api_keys.max_budget per api_keys.budget_duration (NULL: a calendar month; LiteLLM would count a
#   key's budget without a duration for the key's whole life), and the key's per-model JSON limits
#   (model_rpm_limit {"model": n}, model_tpm_limit, model_max_budget {"model": {"budgetLimit": x,
#   "timePeriod": "1d"}}, LiteLLM's snake_case too), read into text arrays so that a malformed value
#   is ignored rather than failing the key's query (db._model_limits).
# Not read: api_keys.soft_budget (an alert in LiteLLM, not a limit), teams' limits.
KEY_QUERY = key_query("litemaas")  # the readings above, in the one key query (gateway/store/keyquery.py)

# gateway/limits/usage_recorder.py's writes to LiteMaaS's tables, for its types: UUID ids (usage_daily keeps
# them as text) and INTEGER used_requests / used_tokens (capped: an overflow would fail every flush).
USED_SQL = """
UPDATE subscriptions s SET used_requests = least(u.requests, 2147483647), used_tokens = least(u.tokens, 2147483647)
FROM (SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(prompt_tokens + completion_tokens), 0) AS tokens
      FROM usage_daily WHERE user_id = $1::text AND model_id = $2::text AND day >= $3) u
WHERE s.user_id = $1::text::uuid AND s.model_id = $2::text
"""
LAST_USED_SQL = ("UPDATE api_keys SET last_used_at = $2 WHERE id = $1::text::uuid "
                 "AND (last_used_at IS NULL OR last_used_at < $2)")

def read_only_error() -> AdminError:
    """What the admin API and CLI answer a write with: LiteMaaS creates users, subscriptions and
    keys (and LiteLLM's copies) itself."""
    return AdminError(
        403, "MANAGED_BY_LITEMAAS",
        "This gateway runs on a LiteMaaS database (database.schema: litemaas): users, models, subscriptions "
        "and keys are managed in LiteMaaS, and the admin API only reads them.",
    )


WATCHED_TABLES = ("api_keys", "api_key_models", "users", "subscriptions")

# Announced: only changes a decision depends on (limits and quotas included). LiteMaaS rewrites
# other columns often (spend, sync bookkeeping), and the gateway's usage batches write
# used_requests / used_tokens / last_used_at, which are not announced. A key whose hash changes (LiteMaaS regenerates
# keys in place) is announced under both hashes.
TRIGGERS_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {GATEWAY_SCHEMA};
CREATE OR REPLACE FUNCTION {GATEWAY_SCHEMA}.notify() RETURNS trigger AS $$
DECLARE
    rec RECORD;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    IF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('{db.INVALIDATION_CHANNEL}',
            json_build_object('kind', 'key', 'id', rec.id::text, 'key_hash', rec.key_hash)::text);
        IF TG_OP = 'UPDATE' AND OLD.key_hash IS DISTINCT FROM NEW.key_hash THEN
            PERFORM pg_notify('{db.INVALIDATION_CHANNEL}',
                json_build_object('kind', 'key', 'id', OLD.id::text, 'key_hash', OLD.key_hash)::text);
        END IF;
    ELSIF TG_TABLE_NAME = 'api_key_models' THEN
        PERFORM pg_notify('{db.INVALIDATION_CHANNEL}', json_build_object('kind', 'key', 'id', rec.api_key_id::text)::text);
    ELSIF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('{db.INVALIDATION_CHANNEL}', json_build_object('kind', 'user', 'id', rec.id::text)::text);
    ELSE
        PERFORM pg_notify('{db.INVALIDATION_CHANNEL}', json_build_object('kind', 'user', 'id', rec.user_id::text)::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS maas_gateway_notify ON api_keys;
CREATE TRIGGER maas_gateway_notify
    AFTER INSERT OR DELETE OR UPDATE OF is_active, revoked_at, expires_at, key_hash, user_id, subscription_id,
                                        rpm_limit, tpm_limit, max_parallel_requests, max_budget, budget_duration,
                                        model_rpm_limit, model_tpm_limit, model_max_budget
    ON api_keys FOR EACH ROW EXECUTE FUNCTION {GATEWAY_SCHEMA}.notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON api_key_models;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR UPDATE OR DELETE
    ON api_key_models FOR EACH ROW EXECUTE FUNCTION {GATEWAY_SCHEMA}.notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON users;
CREATE TRIGGER maas_gateway_notify AFTER DELETE OR UPDATE OF is_active, rpm_limit, tpm_limit, max_budget, budget_duration
    ON users FOR EACH ROW EXECUTE FUNCTION {GATEWAY_SCHEMA}.notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON subscriptions;
CREATE TRIGGER maas_gateway_notify
    AFTER INSERT OR DELETE OR UPDATE OF status, expires_at, user_id, model_id,
                                        quota_requests, quota_tokens, max_budget, reset_at, budget_duration,
                                        rpm_limit, tpm_limit
    ON subscriptions FOR EACH ROW EXECUTE FUNCTION {GATEWAY_SCHEMA}.notify();
"""

REMOVE_TRIGGERS_SQL = "\n".join(f"DROP TRIGGER IF EXISTS maas_gateway_notify ON {t};" for t in WATCHED_TABLES) + (
    f"\nDROP FUNCTION IF EXISTS {GATEWAY_SCHEMA}.notify();"
)


async def shape(conn: Any) -> str:
    """Which schema the connection's database holds: "native", "litemaas", "empty" or "unknown"."""
    rows = await conn.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name = ANY($1::text[])""",
        list(REQUIRED_COLUMNS),
    )
    if not rows:
        return "empty"
    types = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    if types.get(("users", "id")) == "uuid" and ("api_keys", "lite_llm_key_value") in types:
        return "litemaas"
    if types.get(("users", "id")) == "text" and ("api_keys", "lite_llm_key_value") not in types:
        return "native"
    return "unknown"


async def missing_columns(conn: Any) -> list[str]:
    rows = await conn.fetch(
        """SELECT table_name, column_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name = ANY($1::text[])""",
        list(REQUIRED_COLUMNS),
    )
    present = {(r["table_name"], r["column_name"]) for r in rows}
    return [f"{t}.{c}" for t, cols in REQUIRED_COLUMNS.items() for c in sorted(cols) if (t, c) not in present]


async def check_shape(conn: Any, expected: str) -> None:
    """Raise ConfigError, saying what to set, unless the database is what `database.schema` names."""
    found = await shape(conn)
    if expected == "native":
        if found == "litemaas":
            raise ConfigError("database.schema: DATABASE_URL holds a LiteMaaS database (UUID ids, "
                              "api_keys.lite_llm_key_value); set database.schema: litemaas "
                              "(GATEWAY_DATABASE_SCHEMA=litemaas) to run on it unchanged")
        if found == "unknown":
            raise ConfigError("database.schema: DATABASE_URL holds tables named like the gateway's (users, api_keys, ...) "
                              "that are neither the gateway's schema nor LiteMaaS's; refusing to migrate over them")
        return
    if found in ("empty", "native"):
        raise ConfigError(f"database.schema: litemaas, but DATABASE_URL holds {'no LiteMaaS tables' if found == 'empty' else 'the gateway native schema'}"
                          " (expected LiteMaaS's users, models, subscriptions, api_keys, api_key_models with UUID ids)")
    missing = await missing_columns(conn)
    if found != "litemaas" or missing:
        raise ConfigError("database.schema: litemaas, but DATABASE_URL's tables are not LiteMaaS-shaped"
                          + (f" (missing: {', '.join(missing)})" if missing else " (users.id is not a UUID)"))


async def migrate(conn: Any) -> list[str]:
    """The gateway's own schema and state tables; LiteMaaS's tables are not touched."""
    applied: list[str] = []
    available = dict(db.migrations())
    await conn.execute("SELECT pg_advisory_lock($1)", db.MIGRATION_LOCK)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {GATEWAY_SCHEMA}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {GATEWAY_SCHEMA}.gateway_migrations "
            "(name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch(f"SELECT name FROM {GATEWAY_SCHEMA}.gateway_migrations")}
        for name in GATEWAY_STATE_MIGRATIONS:
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {GATEWAY_SCHEMA}")
                await conn.execute(available[name])
                await conn.execute(f"INSERT INTO {GATEWAY_SCHEMA}.gateway_migrations (name) VALUES ($1)", name)
            log.info("applied migration %s in schema %s", name, GATEWAY_SCHEMA)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", db.MIGRATION_LOCK)
    return applied


async def triggers_installed(conn: Any) -> bool:
    count = await conn.fetchval(
        """SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           WHERE t.tgname = 'maas_gateway_notify' AND c.relname = ANY($1::text[])
             AND c.relnamespace = current_schema()::regnamespace""",
        list(WATCHED_TABLES),
    )
    return count == len(WATCHED_TABLES)


async def set_triggers(conn: Any, install: bool) -> None:
    """Install (or remove) the NOTIFY triggers on LiteMaaS's tables: revocations and status
    changes then reach every instance at once instead of after `cache.ttl_seconds`."""
    await conn.execute("SELECT pg_advisory_lock($1)", db.MIGRATION_LOCK)
    try:
        async with conn.transaction():
            await conn.execute(TRIGGERS_SQL if install else REMOVE_TRIGGERS_SQL)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", db.MIGRATION_LOCK)


async def prepare_database(url: str, config: DatabaseConfig, *, apply: bool, triggers: bool | None = None) -> list[str]:
    """Check the database is what `database.schema` says, then migrate it when `apply`; `triggers`
    True / False installs / removes the NOTIFY triggers (LiteMaaS mode); returns the migrations applied."""
    try:
        conn = await asyncpg.connect(url, timeout=db.CONNECT_TIMEOUT_SECONDS)
    except db.DB_ERRORS as exc:
        raise StoreUnavailableError(detail="database unreachable", retry_after=1) from exc
    try:
        await check_shape(conn, config.schema)
        log.info("database.schema %s: DATABASE_URL holds the expected schema", config.schema)
        if config.schema == "native":
            return await db.migrate(conn) if apply else []
        applied = await migrate(conn) if apply else []
        if triggers is not None:
            await set_triggers(conn, install=triggers)
        elif await triggers_installed(conn):
            log.info("database.schema litemaas: LiteMaaS's tables announce changes (NOTIFY triggers installed)")
        else:
            log.warning("database.schema litemaas: the NOTIFY triggers are not installed, so LiteMaaS's changes "
                        "(revocations, suspended subscriptions) reach the gateway only as cached records expire "
                        "(cache.ttl_seconds); run `maas-gateway migrate --litemaas-triggers`")
        return applied
    finally:
        await conn.close()
