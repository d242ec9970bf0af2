-- The outbox of LiteLLM side effects (passthrough mode: LiteLLM's copy of our keys).
-- A management flow writes its rows and the intent in one transaction; after the commit
-- the flow applies the intent, and gateway/accounts/outbox.py retries what it could not, with
-- backoff, so no HTTP call ever runs inside a transaction and nothing is lost to a crash.
--   generate_key  LiteLLM must hold the key (hash) the row names; only the flow that
--                 minted it holds the plaintext, so once its lease is over the intent is
--                 resolved the safe way: the never-delivered key is deleted on both sides
--   update_key    push the state the database now implies (models, blocked), or delete
--   delete_key    delete in LiteLLM; "not found" is success
-- Users need no row here: users.sync_status = 'pending' is their intent (usersync.py).
CREATE TABLE IF NOT EXISTS litellm_outbox (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('generate_key', 'update_key', 'delete_key')),
    key_id          TEXT,
    key_hash        TEXT NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at         TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS litellm_outbox_due_idx ON litellm_outbox (next_attempt_at) WHERE status = 'pending';
