-- Budget periods other than the calendar month (LiteLLM's and LiteMaaS's `budget_duration`:
-- "30s", "1h", "1d", "7d", "30d", "1mo"; policies/periods.py). Subscriptions have had the column
-- since 004 ('monthly'); users get it here, NULL meaning a calendar month.
ALTER TABLE users ADD COLUMN IF NOT EXISTS budget_duration TEXT;

-- A period changed by an admin reaches every cached key at once, as the limits do.
DROP TRIGGER IF EXISTS maas_gateway_notify ON users;
CREATE TRIGGER maas_gateway_notify AFTER DELETE OR UPDATE OF
    is_active, rpm_limit, tpm_limit, max_parallel_requests, max_budget, budget_duration
    ON users FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
DROP TRIGGER IF EXISTS maas_gateway_notify ON subscriptions;
CREATE TRIGGER maas_gateway_notify AFTER INSERT OR DELETE OR UPDATE OF
    user_id, model_id, status, expires_at, quota_requests, quota_tokens, max_budget, reset_at, budget_duration
    ON subscriptions FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
