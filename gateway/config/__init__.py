"""The operator's configuration: `config.yaml` plus the environment, parsed once.

load_config(path, environ) -> Config, a tree of frozen pydantic dataclasses (sections.py).
Unknown keys and values of the wrong type are refused with the key's path in the message
("litellm.timeout_ms: expected an integer, got 'fast'"; messages.py). Secrets come only from
the environment and are never in a repr. Every key is documented in the repository's
`config.yaml`; docs/config.schema.json is generated from the same classes (schema.py).

    values.py    the value types keys are made of (strict; bounds; secrets)
    sections.py  config.yaml's sections, their keys and defaults
    messages.py  ConfigError; pydantic's errors said in one line
    rules.py     what types cannot say: rules between keys, grammars
    loading.py   the file and the environment -> Config
    schema.py    the JSON Schema (python -m gateway.config.schema)

May import: policies (the records and rules its values describe) and nothing else of the gateway.
"""

from gateway.config.loading import (
    CONFIG_ENV,
    ENVIRONMENT,
    SECRET_FIELDS,
    check_serving,
    load_config,
    parse_config,
)
from gateway.config.messages import ConfigError
from gateway.config.sections import (
    AdminConfig,
    BreakerConfig,
    CacheConfig,
    Config,
    ConsoleConfig,
    DatabaseConfig,
    EnforcementConfig,
    HealthConfig,
    KeyLimitDefaults,
    LimitDefaultsConfig,
    LimitsConfig,
    LiteLLMConfig,
    LoggingConfig,
    RedisConfig,
    ResponseHeadersConfig,
    RouteConfig,
    SecurityConfig,
    ServerConfig,
    SubscriptionLimitDefaults,
    UsageConfig,
    UserDefaultsConfig,
    UserLimitDefaults,
)

__all__ = [
    "CONFIG_ENV", "ENVIRONMENT", "SECRET_FIELDS", "AdminConfig", "BreakerConfig", "CacheConfig", "Config",
    "ConfigError", "ConsoleConfig", "DatabaseConfig", "EnforcementConfig", "HealthConfig", "KeyLimitDefaults",
    "LimitDefaultsConfig", "LimitsConfig", "LiteLLMConfig", "LoggingConfig", "RedisConfig", "ResponseHeadersConfig",
    "RouteConfig", "SecurityConfig", "ServerConfig", "SubscriptionLimitDefaults", "UsageConfig", "UserDefaultsConfig",
    "UserLimitDefaults", "check_serving", "load_config", "parse_config",
]
