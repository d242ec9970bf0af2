"""config.yaml plus the environment -> Config, once: load_config(path, environ).

The file is validated by the section classes (sections.py), as written; the environment's
strings are read in the seed's grammar (`LITELLM_TIMEOUT=5000`, `INTEGRATION_HEALTH_CHECK=off`)
and override the file's keys. Secrets come only from the environment.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import TypeAdapter, ValidationError

from gateway.config import rules
from gateway.config.messages import ConfigError, describe, from_validation_error
from gateway.config.sections import Config

CONFIG_ENV = "MAAS_GATEWAY_CONFIG"  # the config file's path, as `maas-gateway serve --config` passes it to workers

# Environment name -> the key it overrides. Units are the seed's; the value's grammar follows the key's type.
ENVIRONMENT: dict[str, str] = {
    "DATABASE_URL": "database.url",
    "REDIS_URL": "redis.url",
    "LITELLM_URL": "litellm.url",
    "LITELLM_API_KEY": "litellm.api_key",
    "GATEWAY_ADMIN_TOKEN": "admin.token",
    "LITELLM_TIMEOUT": "litellm.timeout_ms",
    "LITELLM_REQUEST_TIMEOUT": "litellm.request_timeout_seconds",
    "CIRCUIT_BREAKER_THRESHOLD": "breaker.error_threshold_percent",
    "INTEGRATION_HEALTH_CHECK": "health.integration_check",
    "LITELLM_AUTH": "litellm.auth",
    "GATEWAY_ENFORCEMENT": "enforcement.mode",
    "LITELLM_SYNC_USERS": "litellm.sync_users",
    "GATEWAY_HOST": "server.host",
    "GATEWAY_PORT": "server.port",
    "GATEWAY_WORKERS": "server.workers",
    "GATEWAY_DRAIN_SECONDS": "server.drain_seconds",
    "CONSOLE_ENABLED": "console.enabled",
    "OIDC_ISSUER": "console.oidc_issuer",
    "OIDC_CLIENT_ID": "console.oidc_client_id",
    "OIDC_CLIENT_SECRET": "console.oidc_client_secret",
    "OIDC_SCOPES": "console.oidc_scopes",
    "OIDC_GROUPS_CLAIM": "console.oidc_groups_claim",
    "OIDC_ADMIN_GROUP": "console.oidc_admin_group",
    "SESSION_SECRET": "console.session_secret",
    "CONSOLE_PUBLIC_URL": "console.public_url",
    "CONSOLE_HTTPS_ONLY": "console.https_only",
    "GATEWAY_DATABASE_SCHEMA": "database.schema",
}

# Keys that only the environment may set (sections.py marks them secret()): never in config.yaml.
SECRET_FIELDS = frozenset(
    f"{section}.{f.name}"
    for section, info in Config.__pydantic_fields__.items()
    if dataclasses.is_dataclass(info.annotation)
    for f in dataclasses.fields(info.annotation)
    if f.metadata.get("secret")
)

_CONFIG = TypeAdapter(Config)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_config(data: Any, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from already-loaded YAML data and the environment."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top, got {describe(data)}")
    tree = copy.deepcopy(dict(data or {}))
    for path in sorted(SECRET_FIELDS):
        if _has(tree, path):
            env = next(name for name, key in ENVIRONMENT.items() if key == path)
            raise ConfigError(f"{path}: secrets are not read from the file; set {env} in the environment")
    for name, path in ENVIRONMENT.items():
        raw = (environ or {}).get(name)
        if raw is not None and raw != "":
            _set(tree, path, _env_value(name, raw.strip(), _scalar_type(path)))
    if _has(tree, "database.schema") and tree["database"]["schema"] == "litemaas" and not _has(tree, "litellm.sync_users"):
        _set(tree, "litellm.sync_users", False)  # LiteMaaS syncs its users itself
    try:
        config = _CONFIG.validate_python(tree)
    except ValidationError as exc:
        raise from_validation_error(Config, exc) from None
    rules.check(config)
    return config


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


def check_serving(config: Config) -> None:
    """What serving needs beyond a valid configuration: in service_key mode, the key the
    gateway calls LiteLLM with (without it every request would reach LiteLLM unauthenticated)."""
    if config.litellm.auth == "service_key" and not config.litellm.api_key:
        raise ConfigError(
            "LITELLM_API_KEY: required when litellm.auth is service_key (the gateway calls LiteLLM with it);"
            " set it in the environment, or use litellm.auth: passthrough"
        )


def _env_value(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    return raw


def _scalar_type(path: str) -> type:
    """int, float or bool for a key of that type (also when optional); str for any other."""
    section, key = path.split(".")
    tp = Config.__pydantic_fields__[section].annotation.__pydantic_fields__[key].annotation  # type: ignore[union-attr]
    options = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) else [tp]
    options = [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in options]
    return options[0] if options[0] in (bool, int, float) else str


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
