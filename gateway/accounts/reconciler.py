"""The background sync that heals: every `litellm.sync_interval_seconds` one pass of
Accounts.sync_pending(due_only=True): users LiteLLM may lack, the outbox's due intents
(gateway/accounts/outbox.py), and LiteLLM keys that carry the gateway's alias but no live row.

Runs only when `litellm.sync_users` is true and a database is configured. A pass that
fails (database or LiteLLM down) is logged and the next one tries again; per-user
backoff lives on the rows (gateway/accounts/usersync.py), so the loop itself stays simple.

start_account_services(config, pool, invalidator) is what the lifespan calls: it builds the
management client, Accounts and the reconciler and returns them as AccountServices (typed;
`stop()` ends them).
Accounts and the reconciler use their own small pool (ADMIN_POOL_MAX connections, opened
on demand), never the hot path's: a slow management flow cannot starve key lookups.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from gateway.store import db
from gateway.accounts.service import Accounts
from gateway.errors import GatewayError
from gateway.accounts.litellm import LiteLLMManagement
from gateway.config import Config
from gateway.store.invalidation import Invalidator

log = logging.getLogger("maas_gateway.reconciler")

ADMIN_POOL_MAX = 3


class Reconciler:
    def __init__(self, accounts: Accounts, interval_seconds: float) -> None:
        self._accounts = accounts
        self._interval = interval_seconds
        self._task: asyncio.Task | None = None
        self.passes = 0
        self.last_result: dict[str, Any] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="user-sync-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_once(self) -> dict[str, Any] | None:
        try:
            self.last_result = await self._accounts.sync_pending(due_only=True)
        except GatewayError as exc:
            log.warning("sync pass failed: %s", exc.message)
            return None
        finally:
            self.passes += 1
        result = self.last_result
        if result["synced"] or result["failed"] or result["keys_synced"] or result["keys_failed"] or result["orphans_deleted"]:
            log.info("sync pass", extra={"fields": {k: v for k, v in self.last_result.items() if k != "enabled"}})
        return self.last_result

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a bug must not end the healing for good
                log.exception("sync pass crashed")
            await asyncio.sleep(self._interval)


@dataclass(frozen=True)
class AccountServices:
    """What the admin API, the console and the reconciler share; each None when not configured."""

    accounts: Accounts | None = None  # None without a database
    management: LiteLLMManagement | None = None  # None unless litellm.sync_users
    reconciler: Reconciler | None = None  # None unless both
    admin_pool: Any = None  # Accounts' own small pool

    async def stop(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self.management is not None:
            await self.management.close()
        if self.admin_pool is not None:
            await self.admin_pool.close()


async def start_account_services(config: Config, pool: Any, invalidator: Invalidator | None) -> AccountServices:
    """Build and start what the admin API and the reconciler need (nothing without a database pool)."""
    management = None
    if config.litellm.sync_users:
        management = LiteLLMManagement(config)
        await management.start()
    if pool is None:
        return AccountServices(management=management)
    admin_pool = await db.create_pool(
        config.database.url, dataclasses.replace(config.database, pool_min=0, pool_max=ADMIN_POOL_MAX)
    )
    accounts = Accounts(admin_pool, config, management, invalidator)
    reconciler = None
    if management is not None:
        reconciler = Reconciler(accounts, config.litellm.sync_interval_seconds)
        reconciler.start()
    return AccountServices(accounts, management, reconciler, admin_pool)
