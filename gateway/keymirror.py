"""LiteLLM's copy of our keys, in passthrough mode (the keys are LiteLLM virtual keys).

    generate(...)          POST /key/generate; only its SHA-256 and prefix are stored by the caller
    delete(key_hash)       POST /key/delete  (revocation)
    push(conn, user_id)    POST /key/update  for each live key of the user: the models the key
                           may still use and `blocked` (user deactivated, no usable model left)
    retry()                keys whose last push failed (sync_status = 'error'), for the reconciler

LiteLLM accepts the SHA-256 hex of a key wherever it takes a key, so the plaintext is
never needed after creation. A failed push never stops access being taken away: the
database change still happens (the gateway denies at once), the key is marked
sync_status = 'error' and the reconciler pushes again. In service_key mode, or with
sync off, LiteLLM holds no key state and every method here is a no-op.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from gateway import db
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.litellm import LiteLLMManagement
from gateway.validation import covered
from policies.records import KeyRecord

log = logging.getLogger("maas_gateway.keymirror")

RETRY_BATCH = 100


def litellm_key_state(record: KeyRecord, now: float) -> dict[str, Any]:
    """What LiteLLM should hold for a live key: its usable models, or blocked when there are none.

    An empty model list means "every model" to LiteLLM, so a key with nothing left keeps
    its list and is blocked instead.
    """
    live = [
        s.model_id
        for s in record.subscriptions.values()
        if s.status == "active" and (s.expires_at is None or s.expires_at > now)
    ]
    usable = [m for m in record.models if covered(m, live)]
    blocked = not (record.is_active and record.user_active and usable)
    return {"models": usable or list(record.models), "blocked": blocked}


class KeyMirror:
    def __init__(self, management: LiteLLMManagement | None, config: Config, pool: Any = None) -> None:
        self._management = management
        self._defaults = config.litellm.user_defaults
        self._pool = pool

    @property
    def enabled(self) -> bool:
        return self._management is not None

    async def generate(
        self, user: Mapping[str, Any], key_id: str, models: list[str], name: str | None, expires_at: datetime | None
    ) -> str:
        assert self._management is not None
        payload: dict[str, Any] = {
            "user_id": user["id"],
            "models": models,
            "max_budget": float(user["max_budget"]) if user["max_budget"] is not None else self._defaults.max_budget,
            "tpm_limit": user["tpm_limit"] if user["tpm_limit"] is not None else self._defaults.tpm_limit,
            "rpm_limit": user["rpm_limit"] if user["rpm_limit"] is not None else self._defaults.rpm_limit,
            "metadata": {"maas_gateway_key_id": key_id, "name": name},
        }
        if expires_at is not None:
            seconds = (expires_at - datetime.now(timezone.utc)).total_seconds()
            payload["duration"] = f"{max(1, math.ceil(seconds))}s"
        return await self._management.generate_key(payload)

    async def discard(self, key_hashes: list[str]) -> None:
        """Best effort: delete keys LiteLLM made for a transaction that did not commit."""
        if self._management is None or not key_hashes:
            return
        try:
            await self._management.delete_keys(key_hashes)
        except GatewayError as exc:
            log.error("could not delete an unused LiteLLM key", extra={"fields": {"error": exc.message}})

    async def delete(self, key_hash: str) -> str | None:
        """Revoke in LiteLLM; the key's new sync_status ('synced' | 'error'), None when off."""
        if self._management is None:
            return None
        try:
            await self._management.delete_keys([key_hash])
        except GatewayError as exc:
            log.warning("LiteLLM key delete failed; the reconciler retries", extra={"fields": {"error": exc.message}})
            return "error"
        return "synced"

    async def push(self, conn: Any, user_id: str) -> None:
        """Send the state the (uncommitted) database now implies for each live key of the user."""
        if self._management is None:
            return
        hashes = await conn.fetch(
            "SELECT key_hash FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at", user_id
        )
        for row in hashes:
            await self._push_one(conn, row["key_hash"])

    async def _push_one(self, conn: Any, key_hash: str) -> bool:
        row = await conn.fetchrow(db.KEY_QUERY, key_hash)
        if row is None:
            return True
        record = db.record_from_row(row)
        try:
            if row["revoked_at"] is not None:
                await self._management.delete_keys([key_hash])  # type: ignore[union-attr]
            else:
                await self._management.update_key(key_hash, **litellm_key_state(record, time.time()))  # type: ignore[union-attr]
            status = "synced"
        except GatewayError as exc:
            log.warning(
                "LiteLLM key update failed; the reconciler retries",
                extra={"fields": {"key_id": record.key_id, "error": exc.message}},
            )
            status = "error"
        await conn.execute(
            "UPDATE api_keys SET sync_status = $2 WHERE key_hash = $1 AND sync_status <> $2", key_hash, status
        )
        return status == "synced"

    async def retry(self) -> dict[str, int]:
        """Push every key whose last push failed; counts of keys now synced and still failing."""
        if self._management is None or self._pool is None:
            return {"synced": 0, "failed": 0}
        done = {"synced": 0, "failed": 0}
        rows = await self._pool.fetch(
            "SELECT key_hash FROM api_keys WHERE sync_status = 'error' ORDER BY updated_at LIMIT $1", RETRY_BATCH
        )
        for row in rows:
            async with self._pool.acquire() as conn, conn.transaction():
                ok = await self._push_one(conn, row["key_hash"])
            done["synced" if ok else "failed"] += 1
        return done
