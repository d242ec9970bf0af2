-- A restricted model (LiteMaaS's column name): subscribing to it makes a `pending`
-- subscription that an administrator approves or denies (the console's admin view).
-- No access decision reads it, so the models table's changes need no announcement. Idempotent.
ALTER TABLE models ADD COLUMN IF NOT EXISTS restricted_access BOOLEAN NOT NULL DEFAULT false;
