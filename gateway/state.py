"""What the lifespan builds and every handler uses: one object, handed through app state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.ops.accesslog import AccessLog
from gateway.serving.authguard import AuthGuard
from gateway.serving.breaker import Breaker, ModelBreakers
from gateway.config import BreakerConfig, Config
from gateway.store.keys import KeyStore
from gateway.limits.limiter import Limiter
from gateway.ops.offenders import Offenders
from gateway.serving.routes import RouteTable
from gateway.limits.usage_recorder import UsageRecorder
from gateway.serving.upstream import Upstream, dropped_headers
from policies.records import Mode


@dataclass
class GatewayState:
    config: Config
    routes: RouteTable
    store: KeyStore
    upstream: Upstream
    breaker: Breaker
    pool: Any
    redis: Any | None
    mode: Mode  # may change on config reload
    known_models: frozenset[str] = frozenset()  # bounded label values for metrics
    model_breakers: ModelBreakers = field(default_factory=lambda: ModelBreakers(BreakerConfig()))
    draining: bool = False  # SIGTERM came: readiness 503, requests still served (gateway/runtime/drain.py)
    service_auth: str | None = None  # "Bearer <LITELLM_API_KEY>" in service_key mode
    dropped_headers: frozenset[bytes] = field(default_factory=lambda: dropped_headers(service_key=False))
    access_log: AccessLog = field(default_factory=AccessLog)  # flushed at shutdown
    extras: dict[str, Any] = field(default_factory=dict)  # health probe, reconciler, ...
    auth_guard: AuthGuard = None  # type: ignore[assignment]  # set by the lifespan: failed-auth limiter
    limiter: Limiter = None  # type: ignore[assignment]  # set by the lifespan: rate limits, quotas, budgets
    usage: UsageRecorder | None = None  # usage records (None without a database)
    offenders: Offenders = field(default_factory=lambda: Offenders(None))  # misuse monitoring
