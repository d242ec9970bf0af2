"""docs/config.schema.json: generated from gateway/config/, committed, current, and true to the loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.config import SECRET_FIELDS, ConfigError, parse_config
from gateway.config.schema import json_schema, render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "config.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


def schema_errors(data) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def test_the_committed_schema_is_what_the_models_generate() -> None:
    """Regenerate with `make config-schema` when this fails."""
    assert SCHEMA_FILE.read_text() == render()


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_config_yaml_names_its_schema_for_editors() -> None:
    first = (ROOT / "config.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=docs/config.schema.json"
    assert (ROOT / first.split("$schema=", 1)[1]).resolve() == SCHEMA_FILE


def test_config_yaml_validates_against_the_schema() -> None:
    assert schema_errors(yaml.safe_load((ROOT / "config.yaml").read_text())) == []


def keys_of(section: str) -> set[str]:
    schema = json_schema()
    name = schema["properties"][section]["$ref"].rsplit("/", 1)[1]
    return set(schema["$defs"][name]["anyOf"][0]["properties"])


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    """The command line README gives for CI (check-jsonschema reads YAML 1.2, as editors do)."""
    command = [str(Path(sys.executable).parent / "check-jsonschema"), "--schemafile", str(SCHEMA_FILE), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_check_jsonschema_accepts_config_yaml_and_names_a_wrong_key(tmp_path: Path) -> None:
    assert check_jsonschema(ROOT / "config.yaml").returncode == 0
    wrong = tmp_path / "config.yaml"
    wrong.write_text("enforcement:\n  mode: off\nserver:\n  prot: 8080\n")
    result = check_jsonschema(wrong)
    assert result.returncode == 1
    assert "$.server: Additional properties are not allowed ('prot' was unexpected)" in result.stdout


def test_secrets_are_not_keys_of_the_schema() -> None:
    assert SECRET_FIELDS == {"litellm.api_key", "database.url", "redis.url", "admin.token",
                             "console.oidc_client_secret", "console.session_secret"}
    assert {"timeout_ms", "url"} <= keys_of("litellm")
    for path in SECRET_FIELDS:
        section, key = path.split(".")
        assert key not in keys_of(section), path


def test_a_key_overridden_by_the_environment_says_so() -> None:
    litellm = json_schema()["$defs"]["LiteLLMConfig"]["anyOf"][0]["properties"]
    assert litellm["timeout_ms"]["description"] == "The environment variable LITELLM_TIMEOUT overrides it."
    assert "description" not in litellm["connect_timeout_ms"]


# The schema says what one key may hold; the loader says the same (rules between keys, such as
# server.drain_delay_seconds <= server.drain_seconds, are the loader's alone).
@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({}, True),
        ({"server": None, "litellm": None}, True),
        ({"server": {"port": 9000, "trusted_proxies": ["10.0.0.0/8"]}, "breaker": {"error_threshold_percent": 100}}, True),
        ({"routes": [{"path": "/v1/x", "model": "none", "methods": ["GET"]}]}, True),
        ({"enforcement": {"mode": "shadow"}, "limits": {"defaults": {"user": {"max_budget": 5}}}}, True),
        ({"breaker": {"window_seconds": 5}}, True),  # an integer is a number
        ({"nope": 1}, False),
        ({"server": {"prot": 1}}, False),
        ({"litellm": {"timeout_ms": "fast"}}, False),
        ({"litellm": {"timeout_ms": 1.5}}, False),
        ({"litellm": {"timeout_ms": 0}}, False),
        ({"server": {"port": True}}, False),
        ({"server": {"port": -1}}, False),
        ({"server": {"workers": 0}}, False),
        ({"breaker": {"window_seconds": "10"}}, False),
        ({"breaker": {"error_threshold_percent": 0}}, False),
        ({"security": {"failed_auth_window_seconds": 61}}, False),
        ({"health": {"integration_check": "yes"}}, False),
        ({"litellm": {"auth": "bearer"}}, False),
        ({"enforcement": {"mode": "strict"}}, False),
        ({"routes": [{"model": "body"}]}, False),
        ({"routes": {"path": "/x"}}, False),
        ({"litellm": {"api_key": "sk-x"}}, False),  # a secret: environment only
        ({"admin": {"token": "t"}}, False),
    ],
    ids=lambda v: repr(v)[:60],
)
def test_the_schema_and_the_loader_agree(data: dict, valid: bool) -> None:
    try:
        parse_config(data, {})
        loaded = True
    except ConfigError:
        loaded = False
    assert (loaded, schema_errors(data) == []) == (valid, valid)
