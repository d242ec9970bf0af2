-- Requests, tokens and spend per key, model and UTC day (the key's user kept beside it).
-- Gateway state only (no LiteMaaS table is named): LiteMaaS mode applies it in the schema
-- maas_gateway (gateway/store/litemaas.py, GATEWAY_STATE_MIGRATIONS). Until this file existed, 004
-- created the table: IF NOT EXISTS keeps a database migrated then as it is.
CREATE TABLE IF NOT EXISTS usage_daily (
    day                DATE NOT NULL,
    key_id             TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    model_id           TEXT NOT NULL,
    requests           BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    spend              NUMERIC NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, model_id)
);
CREATE INDEX IF NOT EXISTS usage_daily_user_idx ON usage_daily (user_id, day);
