"""LiteLLM's copy of our keys, in passthrough mode (the keys are LiteLLM virtual keys).

    generate(user, key, key_id, ...)  POST /key/generate with the key the gateway minted
                                      (`key`) and the alias `maas-gateway/<key id>`
    apply(kind, key_hash)             an outbox intent (gateway/accounts/outbox.py): "update_key"
                                      sends the state the database implies now (models,
                                      blocked) or deletes a revoked/vanished key;
                                      "delete_key" deletes (not found is success)
    orphans(live_hashes)              keys in LiteLLM that carry our alias but no live row

The gateway mints the key itself, so its hash is known before LiteLLM is asked and a
crash at any point leaves an intent that names it. LiteLLM accepts the SHA-256 hex of a
key wherever it takes a key, so the plaintext is never needed after creation. In
service_key mode, or with sync off, LiteLLM holds no key state and nothing is sent.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from gateway.store import db
from gateway.config import Config
from gateway.accounts.litellm import LiteLLMManagement
from gateway.accounts.validation import covered
from policies.access import live_models
from policies.records import KeyRecord

ALIAS_PREFIX = "maas-gateway/"


def key_alias(key_id: str) -> str:
    return ALIAS_PREFIX + key_id


def litellm_key_state(record: KeyRecord, now: float) -> dict[str, Any]:
    """What LiteLLM should hold for a live key: its usable models, or blocked when there are none.

    An empty model list means "every model" to LiteLLM, so a key with nothing left keeps
    its list and is blocked instead.
    """
    live = list(live_models(record.subscriptions.values(), now))
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
        self, user: Mapping[str, Any], key: str, key_id: str, models: list[str], name: str | None,
        expires_at: datetime | None,
    ) -> None:
        assert self._management is not None
        payload: dict[str, Any] = {
            "key": key,
            "key_alias": key_alias(key_id),
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
        await self._management.generate_key(payload)

    async def apply(self, kind: str, key_hash: str) -> None:
        """One update/delete intent, from the database's state now (so any order, any repeat, is right)."""
        assert self._management is not None
        if kind == "update_key":
            row = await self._pool.fetchrow(db.KEY_QUERY, key_hash)
            if row is not None and row["revoked_at"] is None:
                state = litellm_key_state(db.record_from_row(row), time.time())
                await self._management.update_key(key_hash, **state)
                return
        await self._management.delete_keys([key_hash])

    async def delete(self, key_hashes: list[str]) -> None:
        assert self._management is not None
        await self._management.delete_keys(key_hashes)

    async def ours(self) -> list[str]:
        """Hashes of the LiteLLM keys that carry our alias."""
        assert self._management is not None
        return await self._management.list_key_hashes(ALIAS_PREFIX)
