-- The console's sign-in (gateway/console/): a user is found by the identity provider's
-- subject, never by email alone. LiteMaaS's column names. Idempotent.
ALTER TABLE users ADD COLUMN IF NOT EXISTS oauth_provider TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS oauth_id TEXT;
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_login_at TIMESTAMPTZ;
CREATE UNIQUE INDEX IF NOT EXISTS users_oauth_identity_key ON users (oauth_provider, oauth_id);
