"""config.yaml's sections as frozen pydantic dataclasses: the keys, their types and defaults.

Every key is documented in the repository's config.yaml; docs/config.schema.json is generated
from these classes (gateway/config/schema.py). Rules that relate two keys are in rules.py.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from gateway.config.values import (
    Count,
    Flag,
    Number,
    SecretText,
    Section,
    Text,
    Why,
    at_least,
    positive,
    secret,
    section,
    within,
)
from policies.breaker import BreakerRule
from policies.records import Mode


@section
class ServerConfig(Section):
    host: Text = "127.0.0.1"
    port: Count = 8080
    workers: Annotated[Count, at_least(1)] = 1
    max_body_bytes: Count = 26_214_400  # 25 MiB: audio uploads fit
    max_json_elements: Count = 500_000  # gateway/serving/bodylimits.py: bounds a JSON parse's memory
    migrate_on_start: Flag = True
    request_id_header: Text = "x-request-id"
    drain_delay_seconds: Number = 5.0  # after SIGTERM: readiness 503, still accepting connections
    drain_seconds: Number = 120.0  # after SIGTERM: in-flight requests and streams may run this long
    trusted_proxies: tuple[Text, ...] = ()  # CIDRs whose X-Forwarded-For names the client (policies/forwarded.py)
    admin_port: Count | None = None  # admin API, /metrics, /health/integration only there (gateway/serving/listeners.py)
    header_read_timeout_seconds: Annotated[Number, positive()] = 10.0  # gateway/serving/listeners.py: slow clients are cut off
    body_read_timeout_seconds: Annotated[Number, positive()] = 120.0  # 25 MiB at 220 KB/s
    keep_alive_timeout_seconds: Annotated[Number, positive()] = 5.0  # uvicorn's timeout_keep_alive
    max_concurrency: Annotated[Count, at_least(1)] = 1000  # requests in flight per worker; beyond, 503 SERVER_BUSY


@section
class UserDefaultsConfig(Section):
    max_budget: Number = 100.0
    tpm_limit: Count = 1000
    rpm_limit: Count = 60


@section
class LiteLLMConfig(Section):
    url: Text = "http://127.0.0.1:4000"
    auth: Literal["passthrough", "service_key"] = "service_key"
    timeout_ms: Annotated[Count, positive()] = 5000  # the gateway's own calls (management API, health probe, /v1/models)
    connect_timeout_ms: Count = 2000
    request_timeout_seconds: Annotated[Number, positive()] = 600.0  # inference: a non-streamed answer, a stream's first chunk
    stream_idle_timeout_ms: Count = 60_000
    max_connections: Count = 512
    sync_users: Flag = True
    sync_interval_seconds: Number = 30.0
    user_defaults: UserDefaultsConfig = field(default_factory=UserDefaultsConfig)
    key_header_name: Text | None = None  # LiteLLM's general_settings.litellm_key_header_name, if it sets one
    api_key: SecretText = secret()  # environment only: LITELLM_API_KEY


_RULE = BreakerRule()  # the breaker's numbers have their defaults in one place: policies/breaker.py


@section
class BreakerConfig(Section):
    """The circuit breakers' numbers (policies/breaker.py's BreakerRule, built by `rule()`)."""

    error_threshold_percent: Annotated[Number, within(0, 100)] = _RULE.error_threshold_percent
    window_seconds: Number = _RULE.window_seconds
    min_requests: Count = _RULE.min_requests
    consecutive_failures: Count = _RULE.consecutive_failures
    reset_timeout_seconds: Number = _RULE.reset_timeout_seconds
    min_distinct_keys: Annotated[Count, at_least(1)] = 3  # a model's breaker opens only on failures from this many keys

    def rule(self, per_key: bool) -> BreakerRule:
        """The rule of LiteLLM's breaker, or (per_key) of a model's, which min_distinct_keys applies to."""
        return BreakerRule(
            consecutive_failures=self.consecutive_failures,
            error_threshold_percent=self.error_threshold_percent,
            min_requests=self.min_requests,
            window_seconds=self.window_seconds,
            reset_timeout_seconds=self.reset_timeout_seconds,
            min_keys=self.min_distinct_keys if per_key else 1,
        )


def _yaml_off(value: Any) -> Any:
    """YAML 1.1 reads a bare `off` (and `on`) as a boolean; `mode: off` means the mode."""
    return ("on" if value else "off") if isinstance(value, bool) else value


@section
class EnforcementConfig(Section):
    mode: Annotated[Mode, BeforeValidator(_yaml_off)] = Mode.ENFORCE


@section
class CacheConfig(Section):
    ttl_seconds: Number = 30.0
    max_entries: Count = 200_000
    negative_ttl_seconds: Number = 5.0
    redis_ttl_seconds: Number = 300.0
    max_stale_seconds: Number = 300.0  # Postgres down: the oldest cached record still served


@section
class DatabaseConfig(Section):
    pool_min: Count = 1
    pool_max: Count = 10
    statement_timeout_ms: Count = 2000
    acquire_timeout_ms: Annotated[Count, positive()] = 1000  # longest wait for a pool connection; then 503 KEY_STORE_UNAVAILABLE
    # native: the gateway's own tables; litemaas: an existing LiteMaaS database (gateway/store/litemaas.py)
    schema: Literal["native", "litemaas"] = "native"
    url: SecretText = secret()  # environment only: DATABASE_URL


@section
class RedisConfig(Section):
    url: SecretText = secret()  # environment only: REDIS_URL


@section
class HealthConfig(Section):
    integration_check: Flag = True
    interval_seconds: Number = 10.0


@section
class RouteConfig(Section):
    path: Text
    model: Literal["body", "multipart", "none"] = "body"
    methods: tuple[Text, ...] = ("POST",)


@section
class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: Flag = True


@section
class ResponseHeadersConfig(Section):
    allow: tuple[Text, ...] = ()  # LiteLLM response headers passed to clients besides the standard ones


@section
class AdminConfig(Section):
    token: SecretText = secret()  # environment only: GATEWAY_ADMIN_TOKEN


@section
class SecurityConfig(Section):
    failed_auth_limit: Annotated[Count, at_least(1)] = 30  # failed authentications per client address and window (policies/auth_failures.py)
    failed_auth_window_seconds: Annotated[Number, within(0, 60), Why("it is the longest Retry-After")] = 60.0


@section
class ConsoleConfig(Section):
    """The web console (/console, gateway/console/): served when enabled and OIDC is configured."""

    enabled: Flag = True
    oidc_issuer: Text | None = None  # OIDC_ISSUER: discovery at <issuer>/.well-known/openid-configuration
    oidc_client_id: Text | None = None  # OIDC_CLIENT_ID
    oidc_client_secret: SecretText = secret()  # environment only: OIDC_CLIENT_SECRET
    oidc_scopes: Text = "openid email profile groups"  # OIDC_SCOPES
    oidc_groups_claim: Text = "groups"  # OIDC_GROUPS_CLAIM
    oidc_admin_group: Text | None = None  # OIDC_ADMIN_GROUP: members see the admin view
    session_secret: SecretText = secret()  # environment only: SESSION_SECRET (signs the session cookie)
    public_url: Text | None = None  # CONSOLE_PUBLIC_URL: the gateway URL shown in code snippets
    https_only: Flag | None = None  # CONSOLE_HTTPS_ONLY: mark the session cookie Secure; null: when public_url is https

    def secure_cookie(self) -> bool:
        """Whether the session cookie is Secure: https_only when set, else whether public_url is https."""
        if self.https_only is not None:
            return self.https_only
        return (self.public_url or "").lower().startswith("https://")


@section
class KeyLimitDefaults(Section):
    rpm_limit: Count | None = None
    tpm_limit: Count | None = None
    max_parallel_requests: Count | None = None


@section
class UserLimitDefaults(KeyLimitDefaults):  # a key's limits, for all the user's keys together, and a budget
    max_budget: Number | None = None


@section
class SubscriptionLimitDefaults(Section):
    quota_requests: Count | None = None
    quota_tokens: Count | None = None
    max_budget: Number | None = None


@section
class LimitDefaultsConfig(Section):
    """What a null limit in the database means (policies/limits.py `effective`); null here: no limit."""

    key: KeyLimitDefaults = field(default_factory=KeyLimitDefaults)
    user: UserLimitDefaults = field(default_factory=UserLimitDefaults)
    subscription: SubscriptionLimitDefaults = field(default_factory=SubscriptionLimitDefaults)


@section
class LimitsConfig(Section):
    expected_instances: Annotated[Count, at_least(1)] = 1  # serving processes (pods x workers): Redis down, each counts limit / this
    defaults: LimitDefaultsConfig = field(default_factory=LimitDefaultsConfig)


@section
class UsageConfig(Section):
    flush_seconds: Annotated[Number, positive()] = 5.0  # usage rows are written this often (and at shutdown)
    # usage_daily rows older than this are deleted; at least a month: a counter Redis lost is seeded from
    # its period's rows (gateway/limits/quota_seeds.py), and budgets of longer periods need as many days
    retention_days: Annotated[Count, at_least(31)] = 400
    max_pending_rows: Annotated[Count, at_least(1)] = 100_000  # kept in memory while Postgres cannot be written


@section
class Config(Section):
    """config.yaml: every section, each with its defaults."""

    server: ServerConfig = field(default_factory=ServerConfig)
    litellm: LiteLLMConfig = field(default_factory=LiteLLMConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    enforcement: EnforcementConfig = field(default_factory=EnforcementConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    routes: tuple[RouteConfig, ...] = ()
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    response_headers: ResponseHeadersConfig = field(default_factory=ResponseHeadersConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
