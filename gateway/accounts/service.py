"""The service layer behind the admin API, the CLI and `maas-gateway dev`.

    users          create (ensure in LiteLLM; a failure leaves the user usable, sync_status = error),
                   get, activate / deactivate
    models         add, list
    subscriptions  create (optionally with a key, in one transaction), change status
    keys           create (every model needs an active subscription), list, revoke
    sync_pending   one reconciler pass: users LiteLLM may lack, due outbox intents, orphans

No LiteLLM call runs inside a database transaction. A change commits its rows together
with the intents LiteLLM must follow (passthrough keys: gateway/accounts/outbox.py), then the cache
invalidation is broadcast (access is taken away at once), then the intents are applied;
what fails is retried by the reconciler. A new passthrough key is committed with a
generate_key intent, then made in LiteLLM; if that fails, the flow deletes what it
committed (and LiteLLM's copy, should it exist) and answers the error.
A key or subscription is only made for a user LiteLLM has (gateway/accounts/usersync.py).
Errors are AdminError / LiteLLMSyncError / UpstreamError, rendered alike by handlers and
the CLI. The full key appears once, in create_key's answer; only its SHA-256 is stored.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import asyncpg

from gateway.store import db

from gateway.accounts import quotas

from gateway.accounts import usage_report
from gateway.config import Config
from gateway.errors import AdminError, GatewayError
from gateway.store.invalidation import Invalidator
from gateway.accounts.issuance import KEY_COLUMNS, KeyIssuer, counted_key_creation, key_row
from gateway.accounts.keymirror import KeyMirror
from gateway.store.keys import hash_key
from gateway.accounts.litellm import LiteLLMManagement
from gateway.ops.metrics import KEY_CREATIONS
from gateway.accounts.outbox import Outbox
from gateway.accounts.usersync import UserSync
from gateway.accounts.validation import (
    EMAIL,
    MODEL_ID,
    USER_ID,
    check,
    check_duration,
    check_status,
    clean_models,
    future_expiry,
    invalid,
    require_subscribed,
)
from gateway.accounts.views import key_view, model_view, subscription_view, user_view

log = logging.getLogger("maas_gateway.accounts")

T = TypeVar("T")

def _mapped(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Database failures become one admin error, whichever query met them."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except asyncpg.DataError as exc:  # an id that cannot be one (LiteMaaS's are UUIDs)
            raise AdminError(404, "NOT_FOUND", "Nothing has this id: it is not a valid id here.") from exc
        except asyncpg.UndefinedTableError as exc:
            raise AdminError(503, "DATABASE_UNAVAILABLE", "The schema is missing: run `maas-gateway migrate`.") from exc
        except db.DB_ERRORS as exc:
            raise AdminError(503, "DATABASE_UNAVAILABLE", f"The database cannot answer ({type(exc).__name__}).") from exc

    return wrapper


def _clean_limits(values: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Only limits of this table; their types and ranges are the body models' (gateway/admin/schema.py)."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise invalid(f"{unknown[0]}: unknown field.", unknown[0])
    if "budget_duration" in values:  # null: the default period, a calendar month (subscriptions' NOT NULL 'monthly')
        values = {**values, "budget_duration": check_duration(values["budget_duration"]) or "monthly"}
    return values


def _not_found(what: str, ident: str, param: str | None = None) -> AdminError:
    return AdminError(404, "NOT_FOUND", f"No {what} with id {ident!r}.", param=param)


class Accounts:
    def __init__(
        self, pool: Any, config: Config, management: LiteLLMManagement | None, invalidator: Invalidator | None
    ) -> None:
        self._pool = pool
        management = management if config.litellm.sync_users else None  # sync off: no management call
        self._invalidator = invalidator
        self.users = UserSync(pool, config, management)
        self.mirror = KeyMirror(management if config.litellm.auth == "passthrough" else None, config, pool)
        self.outbox = Outbox(pool, self.mirror, config)
        self.issuer = KeyIssuer(pool, self.mirror, self.outbox)

    # -- users --------------------------------------------------------------

    @_mapped
    async def create_user(
        self,
        *,
        email: str,
        id: str | None = None,
        username: str | None = None,
        max_budget: float | None = None,
        tpm_limit: int | None = None,
        rpm_limit: int | None = None,
        max_parallel_requests: int | None = None,
        budget_duration: str | None = None,
    ) -> dict:
        user_id = check(USER_ID, id, "id", "user id") if id is not None else str(uuid.uuid4())
        check(EMAIL, email, "email", "email address")
        check_duration(budget_duration)
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO users (id, username, email, max_budget, tpm_limit, rpm_limit, max_parallel_requests,
                                      budget_duration, sync_status, next_sync_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', now() + interval '1 minute') RETURNING *""",
                user_id, username or email, email, max_budget, tpm_limit, rpm_limit, max_parallel_requests,
                budget_duration,
            )
        except asyncpg.UniqueViolationError as exc:
            taken = ("email", email) if exc.constraint_name == "users_email_key" else ("id", user_id)
            raise AdminError(409, "CONFLICT", f"A user with {taken[0]} {taken[1]!r} already exists.", param=taken[0]) from exc
        if self.users.enabled:
            try:
                row = await self.users.ensure(row)
            except GatewayError:  # recorded on the row; the user stays usable and the reconciler heals it
                row = await self._user_row(user_id)
        log.info("user created", extra={"fields": {"user_id": user_id, "sync_status": row["sync_status"]}})
        return user_view(row)

    @_mapped
    async def get_user(self, user_id: str) -> dict:
        return user_view(await self._user_row(user_id))

    @_mapped
    async def set_user_active(self, user_id: str, is_active: bool) -> dict:
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                "UPDATE users SET is_active = $2, updated_at = now() WHERE id = $1 RETURNING *", user_id, is_active
            )
            if row is None:
                raise _not_found("user", user_id)
            intents = await self.outbox.record_user_keys(conn, user_id)
        log.info("user updated", extra={"fields": {"user_id": user_id, "is_active": is_active}})
        await self._publish({"kind": "user", "id": user_id})
        await self.outbox.apply(intents)
        return user_view(row)

    @_mapped
    async def update_user(self, user_id: str, **values: Any) -> dict:
        """PATCH: `is_active` (set_user_active's flow) and/or limits (gateway/accounts/quotas.py; null: the default)."""
        limits = quotas.pick(values, quotas.USER_LIMITS)
        check_duration(limits.get("budget_duration"))
        if "is_active" in values:
            await self.set_user_active(user_id, values["is_active"])
        if not limits:
            return await self.get_user(user_id)
        row = await quotas.set_columns(self._pool, "users", user_id, limits)
        if row is None:
            raise _not_found("user", user_id)
        log.info("user limits changed", extra={"fields": {"user_id": user_id, **limits}})
        await self._publish({"kind": "user", "id": user_id})
        return user_view(row)

    # -- models -------------------------------------------------------------

    @_mapped
    async def create_model(self, *, id: str, input_cost_per_token: float | None = None,
                           output_cost_per_token: float | None = None) -> dict:
        check(MODEL_ID, id, "id", "model name")
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO models (id, name, input_cost_per_token, output_cost_per_token) VALUES ($1, $1, $2, $3)
                   RETURNING *""", id, input_cost_per_token, output_cost_per_token)
        except asyncpg.UniqueViolationError as exc:
            raise AdminError(409, "CONFLICT", f"A model with id {id!r} already exists.", param="id") from exc
        return model_view(row)

    @_mapped
    async def set_model_restricted(self, model_id: str, restricted: bool) -> dict:
        """Subscriptions asked for from now on are `pending` (restricted) or `active`; existing ones stay."""
        row = await self._pool.fetchrow(
            "UPDATE models SET restricted_access = $2 WHERE id = $1 RETURNING *", model_id, restricted)
        if row is None:
            raise _not_found("model", model_id, param="model_id")
        log.info("model access changed", extra={"fields": {"model_id": model_id, "restricted": restricted}})
        return {**model_view(row), "restricted_access": row["restricted_access"]}

    @_mapped
    async def list_models(self) -> list[dict]:
        return [model_view(r) for r in await self._pool.fetch("SELECT * FROM models ORDER BY id")]

    # -- subscriptions ------------------------------------------------------

    @_mapped
    async def create_subscription(
        self,
        *,
        user_id: str,
        model_id: str,
        status: str = "active",
        generate_api_key: bool = False,
        api_key_name: str | None = None,
        **limits: Any,
    ) -> dict:
        """{"subscription", "created", "api_key"?}; asking again for an existing one answers it (created: false).
        `limits`: quota_requests, quota_tokens, max_budget, reset_at (gateway/accounts/quotas.py)."""
        limits = _clean_limits(limits, quotas.SUBSCRIPTION_LIMITS)
        with counted_key_creation(generate_api_key):
            check_status(status)
            if generate_api_key and status != "active":
                raise invalid("generate_api_key: a key needs an active subscription.", "generate_api_key")
            user = await self._user_row(user_id, param="user_id")
            if generate_api_key:
                self._require_active(user)
            if await self._pool.fetchval("SELECT 1 FROM models WHERE id = $1", model_id) is None:
                raise _not_found("model", model_id, param="model_id")
            await self.users.require(user)
            intents: list[int] = []
            async with self._transaction() as conn:
                row = await conn.fetchrow(
                    """INSERT INTO subscriptions (id, user_id, model_id, status) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (user_id, model_id) DO NOTHING RETURNING *""",
                    str(uuid.uuid4()), user_id, model_id, status,
                )
                if row is None:  # it exists, or a concurrent request just made it (we waited for its commit)
                    existing = await conn.fetchrow(
                        "SELECT * FROM subscriptions WHERE user_id = $1 AND model_id = $2", user_id, model_id
                    )
                    return self._existing_subscription(existing, status)
                if limits:
                    row = await quotas.set_columns(conn, "subscriptions", row["id"], limits)
                answer: dict[str, Any] = {"subscription": subscription_view(row), "created": True}
                if generate_api_key:
                    answer["api_key"], intents = await self.issuer.issue(conn, user, [model_id], api_key_name, None)
            if intents:  # committed: now LiteLLM; a failure takes the subscription back too
                answer["api_key"] = await self.issuer.generate(
                    answer["api_key"], intents, user, [model_id], api_key_name, None,
                    undo=("DELETE FROM subscriptions WHERE id = $1", (row["id"],)),
                )
        log.info("subscription created", extra={"fields": {"subscription_id": row["id"], "user_id": user_id, "model": model_id}})
        await self._publish({"kind": "user", "id": user_id})
        if "api_key" in answer:
            await self._key_created(answer["api_key"])
        return answer

    @staticmethod
    def _existing_subscription(row: Any, status: str) -> dict:
        if row is None:  # deleted between the two statements
            raise AdminError(409, "CONFLICT", "The subscription changed meanwhile; try again.")
        if row["status"] != status:
            raise AdminError(
                409, "CONFLICT",
                f"The user already has a subscription to this model ({row['id']}, status {row['status']}); "
                "change its status with PATCH /admin/v1/subscriptions/{id}.",
                param="model_id",
            )
        return {"subscription": subscription_view(row), "created": False}

    @_mapped
    async def set_subscription_status(self, subscription_id: str, status: str) -> dict:
        check_status(status)
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                "UPDATE subscriptions SET status = $2, updated_at = now() WHERE id = $1 RETURNING *",
                subscription_id, status,
            )
            if row is None:
                raise _not_found("subscription", subscription_id)
            intents = await self.outbox.record_user_keys(conn, row["user_id"])
        log.info("subscription status changed", extra={"fields": {"subscription_id": subscription_id, "status": status}})
        await self._publish({"kind": "user", "id": row["user_id"]})
        await self.outbox.apply(intents)
        return subscription_view(row)

    @_mapped
    async def update_subscription(self, subscription_id: str, **values: Any) -> dict:
        """PATCH: `status` (set_subscription_status's flow) and/or quotas (null: the default)."""
        limits = _clean_limits(quotas.pick(values, quotas.SUBSCRIPTION_LIMITS), quotas.SUBSCRIPTION_LIMITS)
        row = None
        if "status" in values:
            view = await self.set_subscription_status(subscription_id, values["status"])
        if limits:
            row = await quotas.set_columns(self._pool, "subscriptions", subscription_id, limits)
            if row is None:
                raise _not_found("subscription", subscription_id)
            log.info("subscription quotas changed", extra={"fields": {"subscription_id": subscription_id}})
            await self._publish({"kind": "user", "id": row["user_id"]})
            view = subscription_view(row)
        return view

    # -- keys ---------------------------------------------------------------

    @_mapped
    async def create_key(
        self, *, user_id: str, models: list[str], name: str | None = None, expires_at: datetime | str | None = None,
        **limits: Any,
    ) -> dict:
        """`limits`: rpm_limit, tpm_limit, max_parallel_requests (gateway/accounts/quotas.py)."""
        limits = _clean_limits(limits, quotas.KEY_LIMITS)
        with counted_key_creation():
            models = clean_models(models)
            expiry = future_expiry(expires_at)
            user = await self._user_row(user_id, param="user_id")
            self._require_active(user)
            await self._check_subscribed(self._pool, user_id, models, lock=False)  # 4xx before any LiteLLM call
            await self.users.require(user)
            async with self._transaction() as conn:
                await self._check_subscribed(conn, user_id, models, lock=True)
                created, intents = await self.issuer.issue(conn, user, models, name, expiry)
                if limits:
                    await quotas.set_columns(conn, "api_keys", created["id"], limits)
                    created.update(limits)
            if intents:
                created = await self.issuer.generate(created, intents, user, models, name, expiry)
        await self._key_created(created)
        return created

    @_mapped
    async def list_keys(self, user_id: str | None = None) -> list[dict]:
        if user_id is None:
            rows = await self._pool.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys k ORDER BY k.created_at, k.id")
        else:
            await self._user_row(user_id, param="user_id")
            rows = await self._pool.fetch(
                f"SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at, k.id", user_id
            )
        return [key_view(r) for r in rows]

    @_mapped
    async def update_key(self, key_id: str, **limits: Any) -> dict:
        """PATCH: the key's rate limits (null: the default)."""
        limits = _clean_limits(limits, quotas.KEY_LIMITS)
        found = await quotas.set_columns(self._pool, "api_keys", key_id, limits) if limits else None
        if found is None:
            raise _not_found("API key", key_id)
        log.info("API key limits changed", extra={"fields": {"key_id": key_id, **limits}})
        await self._publish({"kind": "key", "id": key_id, "key_hash": found["key_hash"]})
        row = await key_row(self._pool, key_id)
        return key_view(row)

    @_mapped
    async def revoke_key(self, key_id: str) -> dict:
        async with self._transaction() as conn:
            found = await conn.fetchrow("SELECT key_hash, revoked_at FROM api_keys WHERE id = $1 FOR UPDATE", key_id)
            if found is None:
                raise _not_found("API key", key_id)
            intents: list[int] = []
            if found["revoked_at"] is None:
                await conn.execute(
                    "UPDATE api_keys SET is_active = FALSE, revoked_at = now(), updated_at = now() WHERE id = $1", key_id
                )
                intents = await self.outbox.record(conn, "delete_key", found["key_hash"], key_id)
        await self._publish({"kind": "key", "id": key_id, "key_hash": found["key_hash"]})
        await self.outbox.apply(intents)
        row = await key_row(self._pool, key_id)
        log.info("API key revoked", extra={"fields": {"key_id": key_id, "key_prefix": row["key_prefix"]}})
        return key_view(row)

    # -- usage ----------------------------------------------------------------

    @_mapped
    async def usage(self, **filters: Any) -> dict:
        """usage_daily rows, filtered and paged (gateway/accounts/usage_report.py)."""
        return await usage_report.usage_page(self._pool, **filters)

    # -- the reconciler's pass ----------------------------------------------

    @_mapped
    async def sync_pending(self, *, due_only: bool = False) -> dict:
        """Ensure users LiteLLM may lack (all of them, or only those whose backoff is over), apply
        the due outbox intents, and delete LiteLLM keys with our alias that no row holds."""
        users = await self.users.run_pass(force=not due_only)
        keys = await self.outbox.run_pass()
        try:
            orphans = await self.outbox.sweep()
        except GatewayError as exc:  # LiteLLM cannot list its keys now: the next pass tries again
            log.warning("orphan sweep failed: %s", exc.message)
            orphans = 0
        return {
            "enabled": self.users.enabled,
            "synced": users["synced"],
            "failed": users["failed"],
            "keys_synced": keys["synced"],
            "keys_failed": keys["failed"],
            "orphans_deleted": orphans,
        }

    # -- helpers ------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def _user_row(self, user_id: str, param: str | None = None) -> Any:
        row = await self._pool.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
        if row is None:
            raise _not_found("user", user_id, param)
        return row

    @staticmethod
    def _require_active(user: Any) -> None:
        if not user["is_active"]:
            raise AdminError(409, "USER_INACTIVE", f"User {user['id']!r} is deactivated; activate it first.", param="user_id")

    async def _check_subscribed(self, conn: Any, user_id: str, models: list[str], *, lock: bool) -> None:
        rows = await conn.fetch(
            "SELECT model_id, status, expires_at FROM subscriptions WHERE user_id = $1" + (" FOR SHARE" if lock else ""),
            user_id,
        )
        require_subscribed(models, rows, time.time())

    async def _key_created(self, created: dict) -> None:
        KEY_CREATIONS.labels(result="success").inc()
        log.info(
            "API key created",
            extra={"fields": {"key_id": created["id"], "key_prefix": created["key_prefix"], "user_id": created["user_id"]}},
        )
        await self._publish({"kind": "key", "id": created["id"], "key_hash": hash_key(created["key"])})

    async def _publish(self, event: dict) -> None:
        """After the commit: drop cached decisions here and on every other instance."""
        if self._invalidator is not None:
            await self._invalidator.publish(event)
