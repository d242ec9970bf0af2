"""Sign-in's database side: the user found by (oauth_provider, oauth_id), created or updated,
then ensured in LiteLLM the way Accounts.create_user does it (gateway/accounts/usersync.py).

    sign_in(accounts, pool, identity)   the user's row after the upsert (and the sync attempt)
    setup_pending(accounts, user)       True while LiteLLM may still lack the user

oauth_provider is the issuer URL: a `sub` is unique only within its issuer. The email is
never used to find a user; an email already held by another user refuses the sign-in.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.accounts.service import Accounts
from gateway.errors import GatewayError

log = logging.getLogger("maas_gateway.console")

UPSERT = """
INSERT INTO users (id, username, email, oauth_provider, oauth_id, last_login_at, sync_status, next_sync_at)
VALUES ($1, $2, $3, $4, $5, now(), 'pending', now() + interval '1 minute')
ON CONFLICT (oauth_provider, oauth_id) DO UPDATE
   SET username = EXCLUDED.username, email = EXCLUDED.email, last_login_at = now(), updated_at = now()
RETURNING *, (xmax = 0) AS inserted
"""


@dataclass(frozen=True)
class Identity:
    provider: str  # the issuer
    subject: str  # the ID token's `sub`
    email: str
    username: str
    groups: tuple[str, ...]


class EmailTaken(Exception):
    """Another user (another identity, or one made by the admin API) has this email."""


async def sign_in(accounts: Accounts, pool: Any, identity: Identity) -> Any:
    try:
        row = await pool.fetchrow(UPSERT, str(uuid.uuid4()), identity.username, identity.email,
                                  identity.provider, identity.subject)
    except asyncpg.UniqueViolationError as exc:
        raise EmailTaken(identity.email) from exc
    log.info("console sign-in", extra={"fields": {"user_id": row["id"], "created": row["inserted"]}})
    if accounts.users.enabled and row["sync_status"] != "synced":
        try:
            row = await accounts.users.ensure(row)
        except GatewayError:  # recorded on the row (sync_status error); the reconciler retries it
            row = await pool.fetchrow("SELECT * FROM users WHERE id = $1", row["id"])
    return row


def setup_pending(accounts: Accounts, user: Any) -> bool:
    return accounts.users.enabled and user["sync_status"] != "synced"
