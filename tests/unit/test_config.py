"""gateway/config/: one parse into frozen objects; unknown keys, wrong types, secrets and env overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import (
    ENVIRONMENT,
    SECRET_FIELDS,
    BreakerConfig,
    Config,
    ConfigError,
    HealthConfig,
    LiteLLMConfig,
    RouteConfig,
    ServerConfig,
    check_serving,
    load_config,
    parse_config,
)
from policies.breaker import BreakerRule
from policies.records import Mode

pytestmark = pytest.mark.unit


def error_of(data, environ=None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ or {})
    return str(info.value)


def test_defaults() -> None:
    config = parse_config({}, {})
    assert config == Config()
    assert config.litellm.timeout_ms == 5000
    assert config.breaker.error_threshold_percent == 50.0
    assert config.health.integration_check is True
    assert config.litellm.auth == "service_key"
    assert config.litellm.sync_users is True
    assert config.enforcement.mode is Mode.ENFORCE
    assert config.routes == ()
    assert (config.litellm.api_key, config.database.url, config.redis.url, config.admin.token) == (None,) * 4


@pytest.mark.parametrize("data", [None, {}], ids=["none", "empty"])
def test_empty_documents_are_defaults(data) -> None:
    assert parse_config(data, {}) == Config()


def test_config_is_frozen() -> None:
    config = parse_config({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server = ServerConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.litellm.timeout_ms = 1  # type: ignore[misc]


def test_full_file() -> None:
    data = {
        "server": {"host": "0.0.0.0", "port": 9000, "workers": 4, "max_body_bytes": 1024, "migrate_on_start": False},
        "litellm": {"url": "https://litellm:4000", "auth": "passthrough", "timeout_ms": 100, "sync_users": False,
                    "user_defaults": {"max_budget": 5, "tpm_limit": 10, "rpm_limit": 1}},
        "breaker": {"error_threshold_percent": 25, "window_seconds": 5, "min_requests": 3},
        "enforcement": {"mode": "shadow"},
        "health": {"integration_check": False, "interval_seconds": 1},
        "routes": [{"path": "/v1/custom", "model": "none", "methods": ["GET", "post"]}, {"path": "/v1/x"}],
        "logging": {"level": "debug", "access_log": False},
    }
    config = parse_config(data, {})
    assert config.server == ServerConfig(host="0.0.0.0", port=9000, workers=4, max_body_bytes=1024, migrate_on_start=False)
    assert config.litellm.url == "https://litellm:4000"
    assert config.litellm.auth == "passthrough"
    assert config.litellm.user_defaults.max_budget == 5.0
    assert isinstance(config.litellm.user_defaults.max_budget, float)
    assert config.breaker == BreakerConfig(error_threshold_percent=25.0, window_seconds=5.0, min_requests=3)
    assert config.enforcement.mode is Mode.SHADOW
    assert config.health == HealthConfig(integration_check=False, interval_seconds=1.0)
    assert config.routes == (
        RouteConfig("/v1/custom", "none", ("GET", "post")),
        RouteConfig("/v1/x", "body", ("POST",)),
    )


def test_input_is_not_mutated_by_env_overrides() -> None:
    data = {"litellm": {"timeout_ms": 100}}
    parse_config(data, {"LITELLM_TIMEOUT": "200", "LITELLM_URL": "http://x"})
    assert data == {"litellm": {"timeout_ms": 100}}


# -- rejections name the key path -----------------------------------------------------

KNOWN_TOP = ("admin, breaker, cache, console, database, enforcement, health, limits, litellm, logging, redis, "
             "response_headers, routes, security, server, usage")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nope": 1}, f"nope: unknown key (known: {KNOWN_TOP})"),
        ({"breaker": {"min_distinct_keys": 0}}, "breaker.min_distinct_keys: must be at least 1"),
        ({"server": {"prot": 1}}, "server.prot: unknown key (known: admin_port, body_read_timeout_seconds, drain_delay_seconds, "
                                  "drain_seconds, header_read_timeout_seconds, host, keep_alive_timeout_seconds, max_body_bytes, "
                                  "max_concurrency, max_json_elements, migrate_on_start, port, request_id_header, trusted_proxies, "
                                  "workers)"),
        ({"server": {"trusted_proxies": ["10.0.0.0/8", "ten"]}}, "server.trusted_proxies[1]: expected an address or CIDR, got 'ten'"),
        ({"server": {"admin_port": 8080}}, "server.admin_port: must differ from server.port (and not be 0)"),
        ({"server": {"max_concurrency": 0}}, "server.max_concurrency: must be at least 1"),
        ({"usage": {"retention_days": 0}}, "usage.retention_days: must be at least 31"),
        ({"server": {"body_read_timeout_seconds": 0}}, "server.body_read_timeout_seconds: must be positive"),
        ({"security": {"failed_auth_limit": 0}}, "security.failed_auth_limit: must be at least 1"),
        ({"security": {"failed_auth_window_seconds": 61}},
         "security.failed_auth_window_seconds: must be within (0, 60] (it is the longest Retry-After)"),
        ({"database": {"acquire_timeout_ms": 0}}, "database.acquire_timeout_ms: must be positive"),
        ({"litellm": {"user_defaults": {"budget": 1}}}, "litellm.user_defaults.budget: unknown key (known: max_budget, rpm_limit, tpm_limit)"),
        ({"routes": [{"path": "/x", "extra": 1}]}, "routes[0].extra: unknown key (known: methods, model, path)"),
        ({"litellm": {"timeout_ms": "fast"}}, "litellm.timeout_ms: expected an integer, got 'fast'"),
        ({"litellm": {"timeout_ms": 1.5}}, "litellm.timeout_ms: expected an integer, got 1.5"),
        ({"server": {"port": True}}, "server.port: expected an integer, got True"),
        ({"server": {"port": -1}}, "server.port: must not be negative, got -1"),
        ({"breaker": {"window_seconds": "10"}}, "breaker.window_seconds: expected a number, got '10'"),
        ({"breaker": {"window_seconds": False}}, "breaker.window_seconds: expected a number, got False"),
        ({"breaker": {"window_seconds": -0.5}}, "breaker.window_seconds: must not be negative, got -0.5"),
        ({"health": {"integration_check": "yes"}}, "health.integration_check: expected true or false, got 'yes'"),
        ({"health": {"integration_check": 1}}, "health.integration_check: expected true or false, got 1"),
        ({"server": {"host": 127}}, "server.host: expected a string, got 127"),
        ({"litellm": {"auth": "bearer"}}, "litellm.auth: expected one of passthrough, service_key, got 'bearer'"),
        ({"enforcement": {"mode": "strict"}}, "enforcement.mode: expected one of enforce, shadow, off, got 'strict'"),
        ({"logging": {"level": "trace"}}, "logging.level: expected one of debug, info, warning, error, got 'trace'"),
        ({"server": [1, 2]}, "server: expected a mapping, got [1, 2]"),
        ({"server": "x" * 100}, f"server: expected a mapping, got {repr('x' * 100)[:57]}..."),
        ({"routes": {"path": "/x"}}, "routes: expected a list, got {'path': '/x'}"),
        ({"routes": ["/x"]}, "routes[0]: expected a mapping, got '/x'"),
        ({"routes": [{"model": "body"}]}, "routes[0].path: required"),
        ({"routes": [{"path": "/x", "model": "query"}]}, "routes[0].model: expected one of body, multipart, none, got 'query'"),
        ({"routes": [{"path": "/x", "methods": "GET"}]}, "routes[0].methods: expected a list, got 'GET'"),
        ({"routes": [{"path": "/x", "methods": [1]}]}, "routes[0].methods[0]: expected a string, got 1"),
        ({"routes": [{"path": "x"}]}, "routes[0].path: expected an absolute path without '//' or dot segments"),
        ({"routes": [{"path": "/a//b"}]}, "routes[0].path: expected an absolute path without '//' or dot segments"),
        ({"routes": [{"path": "/a/../key/generate"}]}, "routes[0].path: expected an absolute path without '//' or dot segments"),
        ({"routes": [{"path": "/ok"}, {"path": "/a/./b"}]}, "routes[1].path: expected an absolute path without '//' or dot segments"),
        ({"litellm": {"url": "litellm:4000"}}, "litellm.url: expected an http(s) URL, got 'litellm:4000'"),
        ({"breaker": {"error_threshold_percent": 0}}, "breaker.error_threshold_percent: must be within (0, 100]"),
        ({"breaker": {"error_threshold_percent": 100.5}}, "breaker.error_threshold_percent: must be within (0, 100]"),
        ({"litellm": {"timeout_ms": 0}}, "litellm.timeout_ms: must be positive"),
        ({"server": {"workers": 0}}, "server.workers: must be at least 1"),
        ({"database": {"pool_min": 5, "pool_max": 2}}, "database.pool_max: must be at least database.pool_min and at least 1"),
        ({"database": {"pool_min": 0, "pool_max": 0}}, "database.pool_max: must be at least database.pool_min and at least 1"),
        ({"response_headers": {"allow": ["x-ratelimit-remaining-requests"]}},
         "response_headers.allow[0]: LiteLLM's rate-limit headers never reach clients (the gateway writes "
         "x-ratelimit-* itself), got 'x-ratelimit-remaining-requests'"),
        ({"response_headers": {"allow": ["x-litellm-response-cost", "LLM_Provider-X-RateLimit-Limit-Tokens"]}},
         "response_headers.allow[1]: LiteLLM's rate-limit headers never reach clients (the gateway writes "
         "x-ratelimit-* itself), got 'LLM_Provider-X-RateLimit-Limit-Tokens'"),
        ({"response_headers": {"allow": ["Date"]}},
         "response_headers.allow[0]: this header is the gateway's own or hop-by-hop, never passed from LiteLLM, got 'Date'"),
        ({"response_headers": {"allow": ["transfer-encoding"]}},
         "response_headers.allow[0]: this header is the gateway's own or hop-by-hop, never passed from LiteLLM, "
         "got 'transfer-encoding'"),
        ({"response_headers": {"allow": ["Set-Cookie"]}},
         "response_headers.allow[0]: this header is the gateway's own or hop-by-hop, never passed from LiteLLM, got 'Set-Cookie'"),
        ({"response_headers": {"allow": ["X-Request-Id"]}},
         "response_headers.allow[0]: the request id header is the gateway's own (server.request_id_header), got 'X-Request-Id'"),
        ({"response_headers": {"allow": ["x cost"]}}, "response_headers.allow[0]: expected a header name, got 'x cost'"),
        ({"response_headers": {"allow": "x-cost"}}, "response_headers.allow: expected a list, got 'x-cost'"),
        ({"usage": {"flush_seconds": 0}}, "usage.flush_seconds: must be positive"),
        ({"usage": {"max_pending_rows": 0}}, "usage.max_pending_rows: must be at least 1"),
        ({"limits": {"expected_instances": 0}}, "limits.expected_instances: must be at least 1"),
        ({"security": {"failed_auth_window_seconds": 0}},
         "security.failed_auth_window_seconds: must be within (0, 60] (it is the longest Retry-After)"),
        ({"server": {"drain_delay_seconds": -1}}, "server.drain_delay_seconds: must not be negative, got -1"),
        ({"server": {"admin_port": "9090"}}, "server.admin_port: expected an integer, got '9090'"),
        ({"limits": {"defaults": {"user": {"max_budget": "5"}}}}, "limits.defaults.user.max_budget: expected a number, got '5'"),
        ({"limits": {"defaults": {"key": {"rpm": 1}}}},
         "limits.defaults.key.rpm: unknown key (known: max_parallel_requests, rpm_limit, tpm_limit)"),
        ({"routes": [None]}, "routes[0].path: required"),
        ({"server": {"host": b"x"}}, "server.host: expected a string, got b'x'"),
        ([1, 2], "config: expected a mapping at the top, got [1, 2]"),
        ("text", "config: expected a mapping at the top, got 'text'"),
    ],
    ids=lambda v: None if isinstance(v, str) else repr(v)[:60],
)
def test_rejections(data, message: str) -> None:
    assert error_of(data) == message


def test_response_headers_allow_list() -> None:
    config = parse_config({"response_headers": {"allow": ["x-litellm-response-cost", "OpenAI-Processing-Ms"]}}, {})
    assert config.response_headers.allow == ("x-litellm-response-cost", "OpenAI-Processing-Ms")
    assert Config().response_headers.allow == ()


def test_breaker_threshold_bounds_accepted() -> None:
    assert parse_config({"breaker": {"error_threshold_percent": 100}}, {}).breaker.error_threshold_percent == 100.0
    assert parse_config({"breaker": {"error_threshold_percent": 0.1}}, {}).breaker.error_threshold_percent == 0.1


def test_null_sections_at_any_depth_are_their_defaults() -> None:
    """A section written with every key commented out is YAML null, as a file that lacks it."""
    assert parse_config({"limits": {"defaults": None}, "litellm": {"user_defaults": None}}, {}) == Config()
    assert parse_config({"limits": {"defaults": {"key": None, "user": {"rpm_limit": 5}}}}, {}).limits.defaults.user.rpm_limit == 5


def test_sections_stay_dataclasses_and_are_validated_when_replaced() -> None:
    """Code and tests derive configs with dataclasses.replace; a wrong value is refused there too."""
    config = parse_config({}, {})
    assert dataclasses.replace(config.server, port=9000).port == 9000
    assert RouteConfig("/v1/x") == RouteConfig(path="/v1/x", model="body", methods=("POST",))
    with pytest.raises(ValueError):
        dataclasses.replace(config.server, port="9000")


def test_breaker_defaults_live_in_the_policy_rule() -> None:
    """BreakerRule (policies/breaker.py) holds the numbers' defaults; BreakerConfig builds the rule."""
    assert BreakerConfig().rule(per_key=False) == BreakerRule()
    assert BreakerConfig().rule(per_key=True) == dataclasses.replace(BreakerRule(), min_keys=3)
    config = parse_config({"breaker": {"consecutive_failures": 2, "error_threshold_percent": 30, "min_requests": 4,
                                       "window_seconds": 6, "reset_timeout_seconds": 7, "min_distinct_keys": 5}}, {})
    assert config.breaker.rule(per_key=True) == BreakerRule(consecutive_failures=2, error_threshold_percent=30.0,
                                                            min_requests=4, window_seconds=6.0,
                                                            reset_timeout_seconds=7.0, min_keys=5)
    assert config.breaker.rule(per_key=False).min_keys == 1


# -- secrets: only from the environment -------------------------------------------------

SECRET_ENV = {
    "litellm.api_key": "LITELLM_API_KEY",
    "database.url": "DATABASE_URL",
    "redis.url": "REDIS_URL",
    "admin.token": "GATEWAY_ADMIN_TOKEN",
    "console.oidc_client_secret": "OIDC_CLIENT_SECRET",
    "console.session_secret": "SESSION_SECRET",
}


def test_secret_fields() -> None:
    assert SECRET_FIELDS == set(SECRET_ENV)


@pytest.mark.parametrize("value", ["s3cret", None, ""], ids=["value", "null", "empty"])
@pytest.mark.parametrize(("path", "env"), list(SECRET_ENV.items()), ids=list(SECRET_ENV))
def test_secrets_refused_in_the_file(path: str, env: str, value) -> None:
    section, leaf = path.split(".")
    message = error_of({section: {leaf: value}}, {env: "from-env"})
    assert message == f"{path}: secrets are not read from the file; set {env} in the environment"
    assert "s3cret" not in message


def test_secrets_are_never_in_a_repr() -> None:
    values = {env: f"postgresql://u:hunter{i}@db/x" if "URL" in env else f"hunter{i}-secret"
              for i, env in enumerate(SECRET_ENV.values())}
    config = parse_config({}, values)
    assert config.database.url == values["DATABASE_URL"]
    for text in (repr(config), str(config), repr(config.litellm), repr(config.console)):
        assert "hunter" not in text


@pytest.mark.parametrize(("path", "env"), list(SECRET_ENV.items()), ids=list(SECRET_ENV))
def test_secrets_from_the_environment(path: str, env: str) -> None:
    config = parse_config({}, {env: "postgresql://x" if "url" in path else "tok"})
    section, leaf = path.split(".")
    assert getattr(getattr(config, section), leaf) == ("postgresql://x" if "url" in path else "tok")


# -- environment overrides --------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "getter", "expected"),
    [
        ({"LITELLM_TIMEOUT": "1500"}, lambda c: c.litellm.timeout_ms, 1500),  # milliseconds, as the seed
        ({"LITELLM_TIMEOUT": " 250 "}, lambda c: c.litellm.timeout_ms, 250),
        ({"LITELLM_REQUEST_TIMEOUT": "1200"}, lambda c: c.litellm.request_timeout_seconds, 1200.0),  # seconds
        ({"GATEWAY_DRAIN_SECONDS": "300"}, lambda c: c.server.drain_seconds, 300.0),
        ({}, lambda c: (c.server.drain_seconds, c.server.drain_delay_seconds), (120.0, 5.0)),
        ({}, lambda c: c.litellm.request_timeout_seconds, 600.0),  # as the OpenAI SDK's
        ({"CIRCUIT_BREAKER_THRESHOLD": "75"}, lambda c: c.breaker.error_threshold_percent, 75.0),
        ({"CIRCUIT_BREAKER_THRESHOLD": "12.5"}, lambda c: c.breaker.error_threshold_percent, 12.5),
        ({"INTEGRATION_HEALTH_CHECK": "false"}, lambda c: c.health.integration_check, False),
        ({"INTEGRATION_HEALTH_CHECK": "FALSE"}, lambda c: c.health.integration_check, False),
        ({"INTEGRATION_HEALTH_CHECK": "0"}, lambda c: c.health.integration_check, False),
        ({"INTEGRATION_HEALTH_CHECK": "off"}, lambda c: c.health.integration_check, False),
        ({"INTEGRATION_HEALTH_CHECK": "no"}, lambda c: c.health.integration_check, False),
        ({"INTEGRATION_HEALTH_CHECK": "True"}, lambda c: c.health.integration_check, True),
        ({"INTEGRATION_HEALTH_CHECK": "1"}, lambda c: c.health.integration_check, True),
        ({"INTEGRATION_HEALTH_CHECK": "yes"}, lambda c: c.health.integration_check, True),
        ({"INTEGRATION_HEALTH_CHECK": "on"}, lambda c: c.health.integration_check, True),
        ({"LITELLM_AUTH": "passthrough"}, lambda c: c.litellm.auth, "passthrough"),
        ({"LITELLM_AUTH": "service_key"}, lambda c: c.litellm.auth, "service_key"),
        ({"GATEWAY_ENFORCEMENT": "shadow"}, lambda c: c.enforcement.mode, Mode.SHADOW),
        ({"GATEWAY_ENFORCEMENT": "off"}, lambda c: c.enforcement.mode, Mode.OFF),
        ({"GATEWAY_ENFORCEMENT": "enforce"}, lambda c: c.enforcement.mode, Mode.ENFORCE),
        ({"LITELLM_SYNC_USERS": "false"}, lambda c: c.litellm.sync_users, False),
        ({"LITELLM_SYNC_USERS": "true"}, lambda c: c.litellm.sync_users, True),
        ({"LITELLM_URL": "http://10.0.0.1:4000"}, lambda c: c.litellm.url, "http://10.0.0.1:4000"),
        ({"GATEWAY_HOST": "0.0.0.0"}, lambda c: c.server.host, "0.0.0.0"),
        ({"GATEWAY_PORT": "9999"}, lambda c: c.server.port, 9999),
        ({"GATEWAY_WORKERS": "3"}, lambda c: c.server.workers, 3),
        ({"LITELLM_TIMEOUT": ""}, lambda c: c.litellm.timeout_ms, 5000),  # empty: unset
        ({"UNRELATED": "x"}, lambda c: c, Config()),
    ],
    ids=lambda v: ",".join(f"{k}={v!r}" for k, v in v.items()) if isinstance(v, dict) else "",
)
def test_env_overrides(environ: dict, getter, expected) -> None:
    assert getter(parse_config({}, environ)) == expected


@pytest.mark.parametrize(
    ("data", "environ", "getter", "expected"),
    [
        ({"litellm": {"timeout_ms": 100}}, {"LITELLM_TIMEOUT": "200"}, lambda c: c.litellm.timeout_ms, 200),
        ({"litellm": {"auth": "service_key"}}, {"LITELLM_AUTH": "passthrough"}, lambda c: c.litellm.auth, "passthrough"),
        ({"litellm": {"sync_users": True}}, {"LITELLM_SYNC_USERS": "false"}, lambda c: c.litellm.sync_users, False),
        ({"enforcement": {"mode": "enforce"}}, {"GATEWAY_ENFORCEMENT": "off"}, lambda c: c.enforcement.mode, Mode.OFF),
        ({"health": {"integration_check": True}}, {"INTEGRATION_HEALTH_CHECK": "false"}, lambda c: c.health.integration_check, False),
        ({"breaker": {"error_threshold_percent": 10}}, {"CIRCUIT_BREAKER_THRESHOLD": "90"}, lambda c: c.breaker.error_threshold_percent, 90.0),
        # the file's other keys in the same section survive
        ({"litellm": {"timeout_ms": 100, "max_connections": 7}}, {"LITELLM_TIMEOUT": "200"}, lambda c: c.litellm.max_connections, 7),
    ],
    ids=["timeout", "auth", "sync", "mode", "health", "threshold", "siblings-kept"],
)
def test_env_overrides_the_file(data: dict, environ: dict, getter, expected) -> None:
    assert getter(parse_config(data, environ)) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LITELLM_TIMEOUT": "5s"}, "LITELLM_TIMEOUT: expected an integer, got '5s'"),
        ({"LITELLM_TIMEOUT": "5.0"}, "LITELLM_TIMEOUT: expected an integer, got '5.0'"),
        ({"LITELLM_TIMEOUT": "0"}, "litellm.timeout_ms: must be positive"),
        ({"LITELLM_REQUEST_TIMEOUT": "0"}, "litellm.request_timeout_seconds: must be positive"),
        ({"GATEWAY_DRAIN_SECONDS": "2"}, "server.drain_delay_seconds: must be within [0, server.drain_seconds]"),
        ({"LITELLM_TIMEOUT": "-5"}, "litellm.timeout_ms: must not be negative, got -5"),
        ({"CIRCUIT_BREAKER_THRESHOLD": "half"}, "CIRCUIT_BREAKER_THRESHOLD: expected a number, got 'half'"),
        ({"CIRCUIT_BREAKER_THRESHOLD": "0"}, "breaker.error_threshold_percent: must be within (0, 100]"),
        ({"CIRCUIT_BREAKER_THRESHOLD": "101"}, "breaker.error_threshold_percent: must be within (0, 100]"),
        ({"CIRCUIT_BREAKER_THRESHOLD": "nan"}, "breaker.error_threshold_percent: must be within (0, 100]"),
        ({"CIRCUIT_BREAKER_THRESHOLD": "inf"}, "breaker.error_threshold_percent: must be within (0, 100]"),
        ({"INTEGRATION_HEALTH_CHECK": "maybe"}, "INTEGRATION_HEALTH_CHECK: expected true or false, got 'maybe'"),
        ({"LITELLM_SYNC_USERS": "2"}, "LITELLM_SYNC_USERS: expected true or false, got '2'"),
        ({"LITELLM_AUTH": "master"}, "litellm.auth: expected one of passthrough, service_key, got 'master'"),
        ({"GATEWAY_ENFORCEMENT": "strict"}, "enforcement.mode: expected one of enforce, shadow, off, got 'strict'"),
        ({"LITELLM_URL": "ftp://x"}, "litellm.url: expected an http(s) URL, got 'ftp://x'"),
        ({"GATEWAY_PORT": "http"}, "GATEWAY_PORT: expected an integer, got 'http'"),
    ],
    ids=lambda v: ",".join(f"{k}={v!r}" for k, v in v.items()) if isinstance(v, dict) else "",
)
def test_env_rejections(environ: dict, message: str) -> None:
    assert error_of({}, environ) == message


def test_every_environment_variable_names_a_key() -> None:
    for name, path in ENVIRONMENT.items():
        section, key = path.split(".")
        assert key in {f.name for f in dataclasses.fields(getattr(Config(), section))}, name


def test_env_table_names() -> None:
    for name in ["DATABASE_URL", "REDIS_URL", "LITELLM_URL", "LITELLM_API_KEY", "GATEWAY_ADMIN_TOKEN", "LITELLM_TIMEOUT",
                 "CIRCUIT_BREAKER_THRESHOLD", "INTEGRATION_HEALTH_CHECK", "LITELLM_AUTH", "GATEWAY_ENFORCEMENT",
                 "LITELLM_SYNC_USERS"]:
        assert name in ENVIRONMENT


def test_env_override_into_a_section_that_is_not_a_mapping() -> None:
    assert error_of({"litellm": "x"}, {"LITELLM_URL": "http://x"}) == "litellm: expected a mapping"


def test_env_override_into_an_empty_section() -> None:
    """`litellm:` with every child commented out is YAML null, which the file alone accepts;
    an environment override of a key in that section must work too."""
    assert parse_config({"litellm": None}, {}).litellm == LiteLLMConfig()
    config = parse_config({"litellm": None}, {"LITELLM_URL": "http://10.0.0.1:4000"})
    assert config.litellm.url == "http://10.0.0.1:4000"


# -- load_config --------------------------------------------------------------------------


def test_load_config_without_a_file_uses_defaults_and_the_environ_given() -> None:
    assert load_config(None, {}) == Config()
    assert load_config(None, {"LITELLM_TIMEOUT": "42"}).litellm.timeout_ms == 42


def test_load_config_reads_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "# operator's file\n"
        "server:\n  port: 9000\n"
        "litellm:\n  auth: passthrough\n  timeout_ms: 100\n"
        "enforcement:\n  mode: shadow\n"
        "routes:\n  - path: /v1/custom\n    model: none\n    methods: [GET]\n"
    )
    config = load_config(path, {"LITELLM_TIMEOUT": "300"})
    assert config.server.port == 9000
    assert config.litellm.auth == "passthrough"
    assert config.litellm.timeout_ms == 300
    assert config.enforcement.mode is Mode.SHADOW
    assert config.routes == (RouteConfig("/v1/custom", "none", ("GET",)),)


@pytest.mark.parametrize("text", ["", "# only comments\n", "---\n"], ids=["empty", "comments", "doc-marker"])
def test_load_config_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(path, {}) == Config()


def test_load_config_empty_sections(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server:\nlitellm:\n  # url: http://x\n")
    assert load_config(path, {}) == Config()


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value) == f"{path}: cannot read the configuration file (No such file or directory)"


def test_load_config_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value).startswith(f"{path}: not valid YAML (")


def test_load_config_top_level_list(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value) == "config: expected a mapping at the top, got ['a', 'b']"


def test_load_config_secret_in_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("litellm:\n  api_key: sk-master-xyz\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value) == "litellm.api_key: secrets are not read from the file; set LITELLM_API_KEY in the environment"


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [("enforce", Mode.ENFORCE), ("shadow", Mode.SHADOW), ('"off"', Mode.OFF), ("off", Mode.OFF)],
    ids=["enforce", "shadow", "off-quoted", "off-unquoted"],
)
def test_load_config_enforcement_mode_as_written(tmp_path: Path, yaml_value: str, expected: Mode) -> None:
    """YAML 1.1 reads a bare `off` as false; `mode: off` is how an operator writes the documented value."""
    path = tmp_path / "config.yaml"
    path.write_text(f"enforcement:\n  mode: {yaml_value}\n")
    assert load_config(path, {}).enforcement.mode is expected


def test_serving_in_service_key_mode_needs_litellm_api_key() -> None:
    """Without it every request would reach LiteLLM unauthenticated: serving refuses, naming the variable."""
    with pytest.raises(ConfigError) as info:
        check_serving(parse_config({}, {}))
    assert str(info.value) == (
        "LITELLM_API_KEY: required when litellm.auth is service_key (the gateway calls LiteLLM with it);"
        " set it in the environment, or use litellm.auth: passthrough"
    )
    check_serving(parse_config({}, {"LITELLM_API_KEY": "sk-service"}))
    check_serving(parse_config({"litellm": {"auth": "passthrough"}}, {}))


@pytest.mark.parametrize(("name", "ok"), [("x-my-key", True), ("X-LiteLLM-Key", True), ("x my key", False),
                                          ("x-key:", False), ("", False), ("x-k\u00e9y", False)])
def test_key_header_name_is_a_header_name(name: str, ok: bool) -> None:
    if ok:
        assert parse_config({"litellm": {"key_header_name": name}}, {}).litellm.key_header_name == name
    else:
        assert error_of({"litellm": {"key_header_name": name}}).startswith("litellm.key_header_name: expected a header name")


@pytest.mark.parametrize(
    ("data", "environ"),
    [({"database": {"schema": "litemaas"}}, {}), ({}, {"GATEWAY_DATABASE_SCHEMA": "litemaas"})],
)
def test_litemaas_schema_turns_user_sync_off_unless_set(data: dict, environ: dict) -> None:
    config = parse_config(data, environ)
    assert (config.database.schema, config.litellm.sync_users) == ("litemaas", False)
    assert parse_config({}, {}).litellm.sync_users is True  # native: the default stays


@pytest.mark.parametrize(
    ("data", "environ", "message"),
    [
        ({"database": {"schema": "litemaas"}, "litellm": {"sync_users": True}}, {},
         "litellm.sync_users: LiteMaaS syncs its own users to LiteLLM; with database.schema litemaas it must be "
         "false (its default there)"),
        ({}, {"GATEWAY_DATABASE_SCHEMA": "litemaas", "LITELLM_SYNC_USERS": "true"},
         "litellm.sync_users: LiteMaaS syncs its own users to LiteLLM; with database.schema litemaas it must be "
         "false (its default there)"),
        ({}, {"GATEWAY_DATABASE_SCHEMA": "lite"}, "database.schema: expected one of native, litemaas, got 'lite'"),
    ],
)
def test_litemaas_schema_rejections(data: dict, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ)
    assert str(caught.value) == message
