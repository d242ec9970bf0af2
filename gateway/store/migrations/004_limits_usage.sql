-- Limits, quotas and usage (LiteMaaS's column names): rate limits on keys and users, quotas
-- and a budget on subscriptions (user x model), prices on models.
-- Null means "the default from config.yaml" (limits.defaults); 0 allows nothing.
ALTER TABLE users ADD COLUMN IF NOT EXISTS max_parallel_requests INTEGER;

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS rpm_limit INTEGER;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS tpm_limit INTEGER;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS max_parallel_requests INTEGER;

ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS quota_requests INTEGER;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS quota_tokens BIGINT;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS max_budget NUMERIC;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS budget_duration TEXT NOT NULL DEFAULT 'monthly';
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS reset_at TIMESTAMPTZ;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS used_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS used_tokens BIGINT NOT NULL DEFAULT 0;

ALTER TABLE models ADD COLUMN IF NOT EXISTS input_cost_per_token NUMERIC;
ALTER TABLE models ADD COLUMN IF NOT EXISTS output_cost_per_token NUMERIC;

-- The usage_daily table is 006_usage_daily.sql's: LiteMaaS mode creates it in the gateway's own schema.

-- The counters the gateway keeps current (used_requests, used_tokens, last_used_at) must not
-- invalidate every cached key of a user at each batch: announce only what decisions read.
DROP TRIGGER IF EXISTS maas_gateway_notify ON api_keys;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR DELETE OR UPDATE OF
    user_id, key_hash, key_prefix, expires_at, is_active, revoked_at, rpm_limit, tpm_limit, max_parallel_requests
    ON api_keys FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON users;
CREATE TRIGGER maas_gateway_notify AFTER DELETE OR UPDATE OF
    is_active, rpm_limit, tpm_limit, max_parallel_requests, max_budget
    ON users FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON subscriptions;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR DELETE OR UPDATE OF
    user_id, model_id, status, expires_at, quota_requests, quota_tokens, max_budget, reset_at
    ON subscriptions FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
