"""The operator's configuration: `config.yaml` plus the environment, parsed once.

load_config(path, environ) -> Config, a tree of frozen dataclasses. Unknown keys
and values of the wrong type are rejected with the key's path in the message
("litellm.timeout_ms: expected an integer, got 'fast'"). Secrets come only from
the environment. Every key is documented in the repository's `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from policies.forwarded import parse_networks
from policies.records import Mode


class ConfigError(Exception):
    """A configuration value is missing, unknown or malformed; the message names its path."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 26_214_400  # 25 MiB: audio uploads fit
    max_json_elements: int = 500_000  # gateway/serving/bodylimits.py: bounds a JSON parse's memory
    migrate_on_start: bool = True
    request_id_header: str = "x-request-id"
    drain_delay_seconds: float = 5.0  # after SIGTERM: readiness 503, still accepting connections
    drain_seconds: float = 120.0  # after SIGTERM: in-flight requests and streams may run this long
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For names the client (policies/forwarded.py)
    admin_port: int | None = None  # admin API, /metrics, /health/integration only there (gateway/serving/listeners.py)
    header_read_timeout_seconds: float = 10.0  # gateway/serving/listeners.py: slow clients are cut off
    body_read_timeout_seconds: float = 120.0  # 25 MiB at 220 KB/s
    keep_alive_timeout_seconds: float = 5.0  # uvicorn's timeout_keep_alive
    max_concurrency: int = 1000  # requests in flight per worker; beyond, 503 SERVER_BUSY


@dataclass(frozen=True)
class UserDefaultsConfig:
    max_budget: float = 100.0
    tpm_limit: int = 1000
    rpm_limit: int = 60


@dataclass(frozen=True)
class LiteLLMConfig:
    url: str = "http://127.0.0.1:4000"
    auth: Literal["passthrough", "service_key"] = "service_key"
    timeout_ms: int = 5000  # the gateway's own calls (management API, health probe, /v1/models)
    connect_timeout_ms: int = 2000
    request_timeout_seconds: float = 600.0  # inference: a non-streamed answer, a stream's first chunk
    stream_idle_timeout_ms: int = 60_000
    max_connections: int = 512
    sync_users: bool = True
    sync_interval_seconds: float = 30.0
    user_defaults: UserDefaultsConfig = field(default_factory=UserDefaultsConfig)
    key_header_name: str | None = None  # LiteLLM's general_settings.litellm_key_header_name, if it sets one
    api_key: str | None = None  # environment only: LITELLM_API_KEY


@dataclass(frozen=True)
class BreakerConfig:
    error_threshold_percent: float = 50.0
    window_seconds: float = 10.0
    min_requests: int = 20
    consecutive_failures: int = 5
    reset_timeout_seconds: float = 30.0
    min_distinct_keys: int = 3  # a model's breaker opens only on failures from this many keys


@dataclass(frozen=True)
class EnforcementConfig:
    mode: Mode = Mode.ENFORCE


@dataclass(frozen=True)
class CacheConfig:
    ttl_seconds: float = 30.0
    max_entries: int = 200_000
    negative_ttl_seconds: float = 5.0
    redis_ttl_seconds: float = 300.0
    max_stale_seconds: float = 300.0  # Postgres down: the oldest cached record still served


@dataclass(frozen=True)
class DatabaseConfig:
    pool_min: int = 1
    pool_max: int = 10
    statement_timeout_ms: int = 2000
    acquire_timeout_ms: int = 1000  # longest wait for a pool connection; then 503 KEY_STORE_UNAVAILABLE
    # native: the gateway's own tables; litemaas: an existing LiteMaaS database (gateway/store/litemaas.py)
    schema: Literal["native", "litemaas"] = "native"
    url: str | None = None  # environment only: DATABASE_URL


@dataclass(frozen=True)
class RedisConfig:
    url: str | None = None  # environment only: REDIS_URL


@dataclass(frozen=True)
class HealthConfig:
    integration_check: bool = True
    interval_seconds: float = 10.0


@dataclass(frozen=True)
class RouteConfig:
    path: str
    model: Literal["body", "multipart", "none"] = "body"
    methods: tuple[str, ...] = ("POST",)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True


@dataclass(frozen=True)
class ResponseHeadersConfig:
    allow: tuple[str, ...] = ()  # LiteLLM response headers passed to clients besides the standard ones


@dataclass(frozen=True)
class AdminConfig:
    token: str | None = None  # environment only: GATEWAY_ADMIN_TOKEN


@dataclass(frozen=True)
class SecurityConfig:
    failed_auth_limit: int = 30  # failed authentications per client address and window (policies/auth_failures.py)
    failed_auth_window_seconds: float = 60.0  # at most 60: it is the longest Retry-After


@dataclass(frozen=True)
class ConsoleConfig:
    """The web console (/console, gateway/console/): served when enabled and OIDC is configured."""

    enabled: bool = True
    oidc_issuer: str | None = None  # OIDC_ISSUER: discovery at <issuer>/.well-known/openid-configuration
    oidc_client_id: str | None = None  # OIDC_CLIENT_ID
    oidc_client_secret: str | None = None  # environment only: OIDC_CLIENT_SECRET
    oidc_scopes: str = "openid email profile groups"  # OIDC_SCOPES
    oidc_groups_claim: str = "groups"  # OIDC_GROUPS_CLAIM
    oidc_admin_group: str | None = None  # OIDC_ADMIN_GROUP: members see the admin view
    session_secret: str | None = None  # environment only: SESSION_SECRET (signs the session cookie)
    public_url: str | None = None  # CONSOLE_PUBLIC_URL: the gateway URL shown in code snippets
    https_only: bool = False  # CONSOLE_HTTPS_ONLY: mark the session cookie Secure


@dataclass(frozen=True)
class KeyLimitDefaults:
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None


@dataclass(frozen=True)
class UserLimitDefaults:
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None
    max_budget: float | None = None


@dataclass(frozen=True)
class SubscriptionLimitDefaults:
    quota_requests: int | None = None
    quota_tokens: int | None = None
    max_budget: float | None = None


@dataclass(frozen=True)
class LimitDefaultsConfig:
    """What a null limit in the database means (policies/limits.py `effective`); null here: no limit."""

    key: KeyLimitDefaults = field(default_factory=KeyLimitDefaults)
    user: UserLimitDefaults = field(default_factory=UserLimitDefaults)
    subscription: SubscriptionLimitDefaults = field(default_factory=SubscriptionLimitDefaults)


@dataclass(frozen=True)
class LimitsConfig:
    expected_instances: int = 1  # serving processes (pods x workers): Redis down, each counts limit / this
    defaults: LimitDefaultsConfig = field(default_factory=LimitDefaultsConfig)


@dataclass(frozen=True)
class UsageConfig:
    flush_seconds: float = 5.0  # usage rows are written this often (and at shutdown)
    retention_days: int = 400  # usage_daily rows older than this are deleted
    max_pending_rows: int = 100_000  # kept in memory while Postgres cannot be written


@dataclass(frozen=True)
class Config:
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


# Fields that only the environment may set: a secret never sits in config.yaml.
SECRET_FIELDS = {"litellm.api_key", "database.url", "redis.url", "admin.token",
                 "console.oidc_client_secret", "console.session_secret"}

# Environment name -> (config path, parser). Units are the seed's.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "DATABASE_URL": ("database.url", "str"),
    "REDIS_URL": ("redis.url", "str"),
    "LITELLM_URL": ("litellm.url", "str"),
    "LITELLM_API_KEY": ("litellm.api_key", "str"),
    "GATEWAY_ADMIN_TOKEN": ("admin.token", "str"),
    "LITELLM_TIMEOUT": ("litellm.timeout_ms", "int"),
    "LITELLM_REQUEST_TIMEOUT": ("litellm.request_timeout_seconds", "float"),
    "CIRCUIT_BREAKER_THRESHOLD": ("breaker.error_threshold_percent", "float"),
    "INTEGRATION_HEALTH_CHECK": ("health.integration_check", "bool"),
    "LITELLM_AUTH": ("litellm.auth", "str"),
    "GATEWAY_ENFORCEMENT": ("enforcement.mode", "str"),
    "LITELLM_SYNC_USERS": ("litellm.sync_users", "bool"),
    "GATEWAY_HOST": ("server.host", "str"),
    "GATEWAY_PORT": ("server.port", "int"),
    "GATEWAY_WORKERS": ("server.workers", "int"),
    "GATEWAY_DRAIN_SECONDS": ("server.drain_seconds", "float"),
    "CONSOLE_ENABLED": ("console.enabled", "bool"),
    "OIDC_ISSUER": ("console.oidc_issuer", "str"),
    "OIDC_CLIENT_ID": ("console.oidc_client_id", "str"),
    "OIDC_CLIENT_SECRET": ("console.oidc_client_secret", "str"),
    "OIDC_SCOPES": ("console.oidc_scopes", "str"),
    "OIDC_GROUPS_CLAIM": ("console.oidc_groups_claim", "str"),
    "OIDC_ADMIN_GROUP": ("console.oidc_admin_group", "str"),
    "SESSION_SECRET": ("console.session_secret", "str"),
    "CONSOLE_PUBLIC_URL": ("console.public_url", "str"),
    "CONSOLE_HTTPS_ONLY": ("console.https_only", "bool"),
    "GATEWAY_DATABASE_SCHEMA": ("database.schema", "str"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_value(name: str, raw: str, kind: str) -> Any:
    raw = raw.strip()
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    return raw


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                return _coerce(option, value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, allowed))}, got {_describe(value)}")
        return value
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return tuple(_coerce(item_tp, item, f"{path}[{i}]") for i, item in enumerate(value))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, bool):  # YAML 1.1 reads a bare `off` as false
            value = "on" if value else "off"
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(member.value for member in tp)
            raise ConfigError(f"{path}: expected one of {allowed}, got {_describe(value)}") from None
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        if value < 0:
            raise ConfigError(f"{path}: must not be negative, got {value}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        if value < 0:
            raise ConfigError(f"{path}: must not be negative, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r}")  # pragma: no cover - a bug in this module


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            values[f.name] = _coerce(hints[f.name], data[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required")
    return cls(**values)


def _set(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        if node.get(part) is None:  # absent, or a section whose keys are all commented out
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{part}: expected a mapping")
    node[leaf] = value


def _has(tree: Mapping, path: str) -> bool:
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _validate(config: Config) -> None:
    if not config.litellm.url.startswith(("http://", "https://")):
        raise ConfigError(f"litellm.url: expected an http(s) URL, got {_describe(config.litellm.url)}")
    if not 0 < config.breaker.error_threshold_percent <= 100:
        raise ConfigError("breaker.error_threshold_percent: must be within (0, 100]")
    if config.litellm.timeout_ms == 0:
        raise ConfigError("litellm.timeout_ms: must be positive")
    if config.breaker.min_distinct_keys < 1:
        raise ConfigError("breaker.min_distinct_keys: must be at least 1")
    if not config.litellm.request_timeout_seconds > 0:
        raise ConfigError("litellm.request_timeout_seconds: must be positive")
    if not 0 <= config.server.drain_delay_seconds <= config.server.drain_seconds:
        raise ConfigError("server.drain_delay_seconds: must be within [0, server.drain_seconds]")
    if config.server.workers < 1:
        raise ConfigError("server.workers: must be at least 1")
    if config.database.schema == "litemaas" and config.litellm.sync_users:
        raise ConfigError("litellm.sync_users: LiteMaaS syncs its own users to LiteLLM; with database.schema "
                          "litemaas it must be false (its default there)")
    if config.database.pool_max < max(config.database.pool_min, 1):
        raise ConfigError("database.pool_max: must be at least database.pool_min and at least 1")
    for i, name in enumerate(config.response_headers.allow):
        problem = _header_problem(name)
        if name.lower() == config.server.request_id_header.lower():
            problem = "the request id header is the gateway's own (server.request_id_header)"
        if problem:
            raise ConfigError(f"response_headers.allow[{i}]: {problem}, got {_describe(name)}")
    _validate_security(config)
    name = config.litellm.key_header_name
    if name is not None and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
        raise ConfigError(f"litellm.key_header_name: expected a header name, got {_describe(name)}")
    for i, route in enumerate(config.routes):
        if not route.path.startswith("/") or "//" in route.path or "/." in route.path:
            raise ConfigError(f"routes[{i}].path: expected an absolute path without '//' or dot segments")


# Response headers an operator may not pass from LiteLLM: its rate-limit headers describe its own
# limits (in service_key mode, the one shared key's), never the user's; `date` and `server` are
# the gateway's; hop-by-hop headers describe one connection.
_GATEWAY_HEADERS = frozenset({"date", "server", "connection", "keep-alive", "proxy-authenticate", "proxy-connection",
                              "te", "trailer", "transfer-encoding", "upgrade", "set-cookie"})


def _header_problem(name: str) -> str | None:
    lowered = name.lower()
    if not name or not all(33 <= ord(c) < 127 and c not in '()<>@,;:\\"/[]?={}' for c in name):
        return "expected a header name"
    if "ratelimit" in lowered:
        return "LiteLLM's rate-limit headers never reach clients (the gateway writes x-ratelimit-* itself)"
    if lowered in _GATEWAY_HEADERS:
        return "this header is the gateway's own or hop-by-hop, never passed from LiteLLM"
    return None


def _validate_security(config: Config) -> None:
    server, security = config.server, config.security
    for i, cidr in enumerate(server.trusted_proxies):
        try:
            parse_networks([cidr])
        except ValueError:
            raise ConfigError(f"server.trusted_proxies[{i}]: expected an address or CIDR, got {_describe(cidr)}") from None
    if server.admin_port is not None and server.admin_port in (0, server.port):
        raise ConfigError("server.admin_port: must differ from server.port (and not be 0)")
    if server.max_concurrency < 1:
        raise ConfigError("server.max_concurrency: must be at least 1")
    for name in ("header_read_timeout_seconds", "body_read_timeout_seconds", "keep_alive_timeout_seconds"):
        if getattr(server, name) <= 0:
            raise ConfigError(f"server.{name}: must be positive")
    if security.failed_auth_limit < 1:
        raise ConfigError("security.failed_auth_limit: must be at least 1")
    if not 0 < security.failed_auth_window_seconds <= 60:
        raise ConfigError("security.failed_auth_window_seconds: must be within (0, 60] (it is the longest Retry-After)")
    if config.usage.flush_seconds <= 0 or config.usage.max_pending_rows < 1:
        raise ConfigError("usage.flush_seconds and usage.max_pending_rows: must be positive")
    if config.limits.expected_instances < 1:
        raise ConfigError("limits.expected_instances: must be at least 1")
    if config.database.acquire_timeout_ms == 0:
        raise ConfigError("database.acquire_timeout_ms: must be positive")


def check_serving(config: Config) -> None:
    """What serving needs beyond a valid configuration: in service_key mode, the key the
    gateway calls LiteLLM with (without it every request would reach LiteLLM unauthenticated)."""
    if config.litellm.auth == "service_key" and not config.litellm.api_key:
        raise ConfigError(
            "LITELLM_API_KEY: required when litellm.auth is service_key (the gateway calls LiteLLM with it);"
            " set it in the environment, or use litellm.auth: passthrough"
        )


def parse_config(data: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from already-loaded YAML data and the environment."""
    tree = dict(data or {}) if data is None or isinstance(data, Mapping) else data
    if not isinstance(tree, dict):
        raise ConfigError(f"config: expected a mapping at the top, got {_describe(data)}")
    for secret in SECRET_FIELDS:
        if _has(tree, secret):
            env = next(name for name, (path, _) in ENVIRONMENT.items() if path == secret)
            raise ConfigError(f"{secret}: secrets are not read from the file; set {env} in the environment")
    tree = _deep_copy(tree)
    for name, (path, kind) in ENVIRONMENT.items():
        raw = (environ or {}).get(name)
        if raw is not None and raw != "":
            _set(tree, path, _env_value(name, raw, kind))
    if _has(tree, "database.schema") and tree["database"]["schema"] == "litemaas" and not _has(tree, "litellm.sync_users"):
        _set(tree, "litellm.sync_users", False)  # LiteMaaS syncs its users itself
    config = _build(Config, tree, "")
    _validate(config)
    return config


def _deep_copy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_deep_copy(v) for v in tree]
    return tree


CONFIG_ENV = "MAAS_GATEWAY_CONFIG"  # the config file's path, as `maas-gateway serve --config` passes it to workers


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read config.yaml (or the embedded defaults when path is None) and apply the environment."""
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_config(data, os.environ if environ is None else environ)
