-- maas-gateway schema. Table and column names follow LiteMaaS for every field the
-- gateway reads, so the gateway can be pointed at an existing LiteMaaS database.
-- Idempotent: every statement may run again.

CREATE TABLE IF NOT EXISTS users (
    id              TEXT PRIMARY KEY,
    username        TEXT NOT NULL,
    email           TEXT NOT NULL,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    max_budget      NUMERIC,
    tpm_limit       INTEGER,
    rpm_limit       INTEGER,
    sync_status     TEXT NOT NULL DEFAULT 'pending'
                    CHECK (sync_status IN ('pending', 'synced', 'error')),
    sync_error      TEXT,
    last_synced_at  TIMESTAMPTZ,
    sync_attempts   INTEGER NOT NULL DEFAULT 0,
    next_sync_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (lower(email));

CREATE TABLE IF NOT EXISTS models (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    provider    TEXT,
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS subscriptions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model_id    TEXT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    status      TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'suspended', 'cancelled', 'expired', 'inactive', 'pending', 'denied')),
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, model_id)
);

CREATE TABLE IF NOT EXISTS api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT,
    key_hash      TEXT NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    key_prefix    TEXT NOT NULL,
    expires_at    TIMESTAMPTZ,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ,
    sync_status   TEXT NOT NULL DEFAULT 'synced'
                  CHECK (sync_status IN ('pending', 'synced', 'error')),
    litellm_key_alias TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE IF NOT EXISTS api_key_models (
    api_key_id  TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    model_id    TEXT NOT NULL,
    PRIMARY KEY (api_key_id, model_id)
);

-- Cache invalidation: every change that can alter a decision is announced on the
-- channel 'maas_gateway_invalidate', so gateways see writes made by any system
-- (LiteMaaS included). Payload: {"kind": "key"|"user", "id": ..., "key_hash"?: ...}.
CREATE OR REPLACE FUNCTION maas_gateway_notify() RETURNS trigger AS $$
DECLARE
    rec RECORD;
    payload JSON;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    IF TG_TABLE_NAME = 'api_keys' THEN
        payload := json_build_object('kind', 'key', 'id', rec.id, 'key_hash', rec.key_hash);
    ELSIF TG_TABLE_NAME = 'api_key_models' THEN
        payload := json_build_object('kind', 'key', 'id', rec.api_key_id);
    ELSIF TG_TABLE_NAME = 'users' THEN
        payload := json_build_object('kind', 'user', 'id', rec.id);
    ELSE
        payload := json_build_object('kind', 'user', 'id', rec.user_id);
    END IF;
    PERFORM pg_notify('maas_gateway_invalidate', payload::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS maas_gateway_notify ON api_keys;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON api_key_models;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR UPDATE OR DELETE ON api_key_models
    FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON users;
CREATE TRIGGER maas_gateway_notify AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON subscriptions;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
