"""A new API key: minted, committed with its LiteLLM intent, then made in LiteLLM or taken back.

    KeyIssuer.issue(conn, ...)     inside the caller's transaction: the key (minted here, in every
                                   mode), its models and, in passthrough mode, its generate_key intent
    KeyIssuer.generate(...)        after the commit: the key in LiteLLM (gateway/accounts/keymirror.py);
                                   on failure what was committed is deleted (plus `undo`) and the
                                   error raised
    counted_key_creation()         a failed creation counts in KEY_CREATIONS{result="failure"}
    KEY_COLUMNS / key_row()        a key's row as the admin views show it (gateway/accounts/views.py)

The full key exists only in the answer these build; only its SHA-256 is stored.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from datetime import datetime
from typing import Any, Iterator

from gateway.accounts.keymirror import KeyMirror, key_alias
from gateway.accounts.outbox import Outbox
from gateway.accounts.views import key_view
from gateway.errors import GatewayError, UpstreamUnavailableError
from gateway.ops.metrics import KEY_CREATIONS
from gateway.store.keyquery import KEY_MODELS
from gateway.store.keys import hash_key, key_prefix

KEY_COLUMNS = f"""k.id, k.user_id, k.name, k.key_prefix, k.expires_at, k.is_active, k.revoked_at,
    k.last_used_at, k.sync_status, k.created_at, k.updated_at, k.rpm_limit, k.tpm_limit, k.max_parallel_requests,
    {KEY_MODELS} AS models"""


async def key_row(conn: Any, key_id: str) -> Any:
    """The key's row (KEY_COLUMNS), or None; `conn` a connection or the pool."""
    return await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1", key_id)


@contextlib.contextmanager
def counted_key_creation(counted: bool = True) -> Iterator[None]:
    """A failed key creation counts in KEY_CREATIONS{result="failure"}; success is counted by _key_created."""
    try:
        yield
    except Exception:
        if counted:
            KEY_CREATIONS.labels(result="failure").inc()
        raise


class KeyIssuer:
    def __init__(self, pool: Any, mirror: KeyMirror, outbox: Outbox) -> None:
        self._pool = pool
        self.mirror = mirror
        self.outbox = outbox

    async def issue(
        self, conn: Any, user: Any, models: list[str], name: str | None, expires_at: datetime | None
    ) -> tuple[dict, list[int]]:
        """Insert the key (minted here, in every mode) and, in passthrough mode, its generate_key intent."""
        key_id, key = str(uuid.uuid4()), "sk-" + secrets.token_urlsafe(32)
        await conn.execute(
            """INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, expires_at, sync_status, litellm_key_alias)
               VALUES ($1, $2, $3, $4, $5, $6, 'synced', $7)""",
            key_id, user["id"], name, hash_key(key), key_prefix(key), expires_at,
            key_alias(key_id) if self.mirror.enabled else None,
        )
        await conn.executemany(
            "INSERT INTO api_key_models (api_key_id, model_id) VALUES ($1, $2)", [(key_id, m) for m in models]
        )
        intents = await self.outbox.record(conn, "generate_key", hash_key(key), key_id)
        return {**key_view(await key_row(conn, key_id)), "key": key}, intents

    async def generate(
        self, created: dict, intents: list[int], user: Any, models: list[str], name: str | None,
        expires_at: datetime | None, undo: tuple[str, tuple] | None = None,
    ) -> dict:
        """After the commit: make the key in LiteLLM, or take back what was committed and raise."""
        [intent] = intents
        try:
            await self.mirror.generate(user, created["key"], created["id"], models, name, expires_at)
        except GatewayError:
            await self.outbox.abandon(intent, extra_sql=undo[0] if undo else None, extra_args=undo[1] if undo else ())
            raise
        if not await self.outbox.generated(intent):  # the reconciler gave it up meanwhile: it is deleted
            raise UpstreamUnavailableError(detail="LiteLLM answered after the key was given up", retry_after=1)
        return {**key_view(await key_row(self._pool, created["id"])), "key": created["key"]}
