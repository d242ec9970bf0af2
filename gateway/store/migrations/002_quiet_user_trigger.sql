-- A user's row changes often for reasons no decision depends on (sync_status,
-- sync_error, next_sync_at as the reconciler works). Announce only what matters to
-- access: activation changes and deletion. Keys, key models and subscriptions keep
-- announcing every change.
DROP TRIGGER IF EXISTS maas_gateway_notify ON users;
CREATE TRIGGER maas_gateway_notify AFTER UPDATE OF is_active OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION maas_gateway_notify();
