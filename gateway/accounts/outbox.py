"""The outbox of LiteLLM key side effects (table litellm_outbox, migration 003).

    record(conn, kind, key_hash, key_id)   inside the flow's transaction, with its rows
    record_user_keys(conn, user_id)        an update_key intent per live key of the user
    apply(ids)                             after the commit: the flow applies its own intents
    generated(id) / abandon(id)            the flow's generate_key: LiteLLM has it / give it up
    run_pass()                             the worker: every due intent, oldest first
    sweep()                                delete LiteLLM keys with our alias and no live row

No HTTP call runs inside a transaction: intents are committed with the rows they concern,
then applied. A failed apply is retried by the worker after interval * 2^attempts (at most
64 intervals); the key's api_keys.sync_status says pending | synced | error meanwhile.
A new intent is due only after a lease (3 x LITELLM_TIMEOUT, at least 1 s), so the worker
does not race the flow that is applying it; a claim renews the lease, so several instances
share the work (FOR UPDATE SKIP LOCKED). Applying twice is harmless (gateway/accounts/keymirror.py).
A generate_key still pending when its lease ends belongs to a flow that died (the
plaintext died with it): the key was never handed out, so it is deleted on both sides.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.accounts.keymirror import KeyMirror

log = logging.getLogger("maas_gateway.outbox")

BACKOFF_DOUBLINGS = 6
BATCH = 100

INSERT = """
INSERT INTO litellm_outbox (kind, key_hash, key_id, next_attempt_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id
"""
INSERT_USER_KEYS = """
INSERT INTO litellm_outbox (kind, key_hash, key_id, next_attempt_at)
SELECT 'update_key', key_hash, id, now() + make_interval(secs => $2)
FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at
RETURNING id
"""
CLAIM = """
UPDATE litellm_outbox SET next_attempt_at = now() + make_interval(secs => $1)
WHERE id IN (
    SELECT id FROM litellm_outbox WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING *
"""
DONE = """
UPDATE litellm_outbox SET status = 'done', done_at = now(), last_error = NULL
WHERE id = $1 AND status = 'pending' AND kind = $2 RETURNING key_hash
"""
KEY_SETTLED = """
UPDATE api_keys SET sync_status = 'synced' WHERE key_hash = $1 AND sync_status <> 'synced'
AND NOT EXISTS (SELECT 1 FROM litellm_outbox WHERE key_hash = $1 AND status = 'pending')
"""
FAILED = """
UPDATE litellm_outbox SET attempts = attempts + 1, last_error = $2,
       next_attempt_at = now() + make_interval(secs => $3 * power(2, least(attempts, $4)))
WHERE id = $1 AND status = 'pending' RETURNING key_hash
"""
KEY_FAILED = "UPDATE api_keys SET sync_status = 'error' WHERE key_hash = $1 AND sync_status <> 'error'"
# A generate that will not complete: the row goes, the intent becomes a delete (LiteLLM may hold it).
ABANDON = """
UPDATE litellm_outbox SET kind = 'delete_key', next_attempt_at = now()
WHERE id = $1 AND status = 'pending' AND kind = 'generate_key' RETURNING key_id
"""


class Outbox:
    def __init__(self, pool: Any, mirror: KeyMirror, config: Config) -> None:
        self._pool = pool
        self._mirror = mirror
        self._interval = max(config.litellm.sync_interval_seconds, 0.001)
        self._lease = max(3 * config.litellm.timeout_ms / 1000, 1.0)

    @property
    def enabled(self) -> bool:
        return self._mirror.enabled

    # -- inside the flow's transaction --------------------------------------

    async def record(self, conn: Any, kind: str, key_hash: str, key_id: str | None = None) -> list[int]:
        if not self.enabled:
            return []
        await conn.execute("UPDATE api_keys SET sync_status = 'pending' WHERE key_hash = $1", key_hash)
        return [await conn.fetchval(INSERT, kind, key_hash, key_id, self._lease)]

    async def record_user_keys(self, conn: Any, user_id: str) -> list[int]:
        if not self.enabled:
            return []
        await conn.execute("UPDATE api_keys SET sync_status = 'pending' WHERE user_id = $1 AND revoked_at IS NULL", user_id)
        return [r["id"] for r in await conn.fetch(INSERT_USER_KEYS, user_id, self._lease)]

    # -- after the commit ---------------------------------------------------

    async def apply(self, ids: Iterable[int]) -> None:
        """Apply the flow's own update/delete intents now; failures are left to the worker."""
        for ident in ids:
            row = await self._pool.fetchrow("SELECT * FROM litellm_outbox WHERE id = $1 AND status = 'pending'", ident)
            if row is not None:
                await self._apply(row)

    async def generated(self, ident: int) -> bool:
        """LiteLLM made the key: done, unless the worker gave the intent up meanwhile (False)."""
        async with self._pool.acquire() as conn, conn.transaction():
            key_hash = await conn.fetchval(DONE, ident, "generate_key")
            if key_hash is not None:
                await conn.execute(KEY_SETTLED, key_hash)
        return key_hash is not None

    async def abandon(self, ident: int, *, extra_sql: str | None = None, extra_args: tuple = ()) -> None:
        """The key will not be handed out: delete its row (and what extra_sql says) and LiteLLM's copy."""
        async with self._pool.acquire() as conn, conn.transaction():
            key_id = await conn.fetchval(ABANDON, ident)
            if key_id is not None:
                await conn.execute("DELETE FROM api_keys WHERE id = $1", key_id)
                if extra_sql is not None:
                    await conn.execute(extra_sql, *extra_args)
        await self.apply([ident])

    # -- the worker ---------------------------------------------------------

    async def run_pass(self) -> dict[str, int]:
        """Every due intent, oldest first: counts of intents applied and still failing."""
        done = {"synced": 0, "failed": 0}
        if not self.enabled:
            return done
        for row in await self._pool.fetch(CLAIM, self._lease, BATCH):
            if row["kind"] == "generate_key":  # its flow died: the plaintext is gone
                log.warning("abandoning a key generation whose flow ended", extra={"fields": {"key_id": row["key_id"]}})
                await self.abandon(row["id"])
                ok = await self._pool.fetchval("SELECT status = 'done' FROM litellm_outbox WHERE id = $1", row["id"])
            else:
                ok = await self._apply(row)
            done["synced" if ok else "failed"] += 1
        return done

    async def sweep(self) -> int:
        """Delete LiteLLM keys that carry our alias but have no live row (no pending intent either)."""
        if not self.enabled:
            return 0
        # LiteLLM first, then the rows: a key is committed (row and intent) before LiteLLM makes
        # it, so every key listed here has its row by the time the rows are read. The other order
        # took a key made between the two reads for an orphan and deleted it.
        listed = await self._mirror.ours()
        rows = await self._pool.fetch(
            """SELECT key_hash FROM api_keys WHERE revoked_at IS NULL
               UNION SELECT key_hash FROM litellm_outbox WHERE status = 'pending'"""
        )
        live = {r["key_hash"] for r in rows}
        orphans = [h for h in listed if h not in live]
        if orphans:
            log.warning("deleting LiteLLM keys no row holds", extra={"fields": {"count": len(orphans)}})
            for start in range(0, len(orphans), BATCH):
                await self._mirror.delete(orphans[start:start + BATCH])
        return len(orphans)

    async def _apply(self, row: Any) -> bool:
        try:
            await self._mirror.apply(row["kind"], row["key_hash"])
        except GatewayError as exc:
            log.warning(
                "LiteLLM key %s failed; retried later", row["kind"].removesuffix("_key"),
                extra={"fields": {"key_id": row["key_id"], "error": exc.message}},
            )
            async with self._pool.acquire() as conn, conn.transaction():
                if await conn.fetchval(FAILED, row["id"], exc.message, self._interval, BACKOFF_DOUBLINGS) is not None:
                    await conn.execute(KEY_FAILED, row["key_hash"])
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(DONE, row["id"], row["kind"]) is not None:
                await conn.execute(KEY_SETTLED, row["key_hash"])
        return True
