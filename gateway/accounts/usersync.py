"""Users in LiteLLM's own user table: ensure one, record how it went, and the healing pass.

    ensure(user)    GET /user/info -> missing -> POST /user/new; "already exists" is success
    require(user)   ensure unless the row says synced; LiteLLMSyncError when LiteLLM still lacks them
    run_pass()      every pending/error user whose backoff is over (or all of them: force)

The outcome lands on the user's row: sync_status (pending | synced | error), sync_error,
sync_attempts and next_sync_at = now + interval * 2^attempts (at most 64 intervals).
A failure never blocks the user locally; the reconciler retries until synced.
Several instances may run passes at once: each claims its users with FOR UPDATE SKIP
LOCKED and a lease on next_sync_at, and a duplicate ensure is harmless anyway.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from gateway.config import Config
from gateway.errors import GatewayError, LiteLLMSyncError
from gateway.accounts.litellm import LiteLLMManagement
from gateway.ops.metrics import USER_SYNCS

log = logging.getLogger("maas_gateway.usersync")

BACKOFF_DOUBLINGS = 6  # the longest wait is 2^6 = 64 intervals
LEASE_SECONDS = 60.0
RETRY_AFTER_SECONDS = 5  # told to a client whose user LiteLLM still lacks
BATCH = 100

_SUCCESS = USER_SYNCS.labels(result="success")
_FAILURE = USER_SYNCS.labels(result="failure")

RECORD_SUCCESS = """
UPDATE users SET sync_status = 'synced', sync_error = NULL, sync_attempts = 0,
       next_sync_at = NULL, last_synced_at = now()
WHERE id = $1 RETURNING *
"""
RECORD_FAILURE = """
UPDATE users SET sync_status = 'error', sync_error = $2, sync_attempts = sync_attempts + 1,
       next_sync_at = now() + make_interval(secs => $3 * power(2, least(sync_attempts, $4)))
WHERE id = $1 RETURNING *
"""
CLAIM = """
UPDATE users SET next_sync_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM users
    WHERE sync_status IN ('pending', 'error') AND ($1 OR next_sync_at IS NULL OR next_sync_at <= now())
    ORDER BY next_sync_at NULLS FIRST, created_at
    LIMIT $3 FOR UPDATE SKIP LOCKED)
RETURNING *
"""


class UserSync:
    def __init__(self, pool: Any, config: Config, management: LiteLLMManagement | None) -> None:
        self._pool = pool
        self._defaults = config.litellm.user_defaults
        self._interval = max(config.litellm.sync_interval_seconds, 0.001)
        self._management = management

    @property
    def enabled(self) -> bool:
        return self._management is not None

    async def ensure(self, user: Mapping[str, Any]) -> Any:
        """Make sure LiteLLM has this user and record it; the updated row. Raises the LiteLLM failure."""
        assert self._management is not None, "user sync is off"
        try:
            if not await self._management.user_exists(user["id"]):
                await self._management.create_user(
                    user_id=user["id"],
                    email=user["email"],
                    alias=user["username"],
                    max_budget=_number(user["max_budget"], self._defaults.max_budget),
                    tpm_limit=_number(user["tpm_limit"], self._defaults.tpm_limit),
                    rpm_limit=_number(user["rpm_limit"], self._defaults.rpm_limit),
                )
        except GatewayError as exc:
            _FAILURE.inc()
            log.warning("user sync failed", extra={"fields": {"user_id": user["id"], "error": exc.message}})
            await self._pool.fetchrow(RECORD_FAILURE, user["id"], exc.message, self._interval, BACKOFF_DOUBLINGS)
            raise
        _SUCCESS.inc()
        log.info("user synced to LiteLLM", extra={"fields": {"user_id": user["id"]}})
        return await self._pool.fetchrow(RECORD_SUCCESS, user["id"])

    async def require(self, user: Mapping[str, Any]) -> None:
        """Before a key or subscription: the user must exist in LiteLLM (no-op when sync is off)."""
        if self._management is None or user["sync_status"] == "synced":
            return
        try:
            await self.ensure(user)
        except GatewayError as exc:
            raise LiteLLMSyncError(retry_after=RETRY_AFTER_SECONDS) from exc

    async def run_pass(self, *, force: bool) -> dict[str, Any]:
        """Ensure every user LiteLLM may lack: due ones only, or all of them when forced."""
        synced, failed = 0, []
        if self._management is None:
            return {"synced": 0, "failed": []}
        for user in await self._pool.fetch(CLAIM, force, LEASE_SECONDS, BATCH):
            try:
                await self.ensure(user)
            except GatewayError as exc:
                failed.append({"user_id": user["id"], "error": exc.message})
            else:
                synced += 1
        return {"synced": synced, "failed": failed}


def _number(value: Any, default: float) -> Any:
    if value is None:
        return default
    return float(value) if not isinstance(value, int) else value
