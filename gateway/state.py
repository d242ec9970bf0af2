"""What the lifespan builds and every handler uses: one object, handed through app state.

Every component is a typed attribute, built in one place (GatewayApp.lifespan in gateway/app.py).
The only fields that change after startup say so: the mode and config (reload), `draining`
(SIGTERM), `known_models` (refreshed), and the health probe's latest report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.accounts.reconciler import AccountServices
from gateway.config import BreakerConfig, Config
from gateway.limits.limiter import Limiter
from gateway.limits.usage_recorder import UsageRecorder
from gateway.ops.accesslog import AccessLog
from gateway.ops.offenders import Offenders
from gateway.serving.authguard import AuthGuard
from gateway.serving.breaker import Breaker, ModelBreakers
from gateway.serving.routes import RouteTable
from gateway.serving.upstream import Upstream, dropped_headers
from gateway.store.invalidation import Invalidator
from gateway.store.keys import KeyStore
from policies.records import Mode


@dataclass(frozen=True)
class DependencyCheck:
    """One dependency as the health probe last found it."""

    status: str  # healthy | unhealthy | disabled
    latency_ms: float | None = None  # None when disabled

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status} if self.latency_ms is None else {"status": self.status, "latency": self.latency_ms}


@dataclass(frozen=True)
class HealthReport:
    """One round of the health probe (gateway/runtime/health.py)."""

    postgres: DependencyCheck
    redis: DependencyCheck
    litellm: DependencyCheck | None  # None: the integration check is off (INTEGRATION_HEALTH_CHECK=false)
    checked_ts: float  # epoch seconds


@dataclass
class GatewayState:
    config: Config
    routes: RouteTable
    store: KeyStore
    upstream: Upstream
    breaker: Breaker
    pool: Any  # asyncpg.Pool, None without a database
    redis: Any | None  # redis.asyncio.Redis, None without REDIS_URL
    mode: Mode  # may change on config reload
    auth_guard: AuthGuard  # failed-authentication limiter
    limiter: Limiter  # rate limits, quotas, budgets
    usage: UsageRecorder | None  # usage records (None without a database)
    offenders: Offenders  # misuse monitoring
    invalidator: Invalidator  # Postgres/Redis notifications -> cache evictions
    account_services: AccountServices  # admin API's and console's Accounts, LiteLLM management, reconciler
    known_models: frozenset[str] = frozenset()  # bounded label values for metrics
    model_breakers: ModelBreakers = field(default_factory=lambda: ModelBreakers(BreakerConfig()))
    draining: bool = False  # SIGTERM came: readiness 503, requests still served (gateway/runtime/drain.py)
    service_auth: str | None = None  # "Bearer <LITELLM_API_KEY>" in service_key mode
    dropped_headers: frozenset[bytes] = field(default_factory=lambda: dropped_headers(service_key=False))
    access_log: AccessLog = field(default_factory=AccessLog)  # flushed at shutdown
    health: HealthReport | None = None  # the probe's latest; set before serving starts (start_health)
    last_user_sync: float | None = None  # epoch seconds users were last synced with LiteLLM, by any instance
