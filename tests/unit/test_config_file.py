"""The operator's config.yaml in the repository is the embedded defaults, written out."""

from pathlib import Path

import pytest

from gateway.config import Config, load_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_repository_config_yaml_equals_the_defaults():
    assert load_config(ROOT / "config.yaml", environ={}) == Config()


def test_every_config_key_is_documented_in_config_yaml():
    text = (ROOT / "config.yaml").read_text()
    for variable in ("DATABASE_URL", "REDIS_URL", "LITELLM_API_KEY", "GATEWAY_ADMIN_TOKEN"):
        assert variable in text, variable
    for section, value in vars(Config()).items():
        if section in ("redis", "admin"):
            continue  # only secrets: the environment variables above
        assert f"{section}:" in text, section
        if hasattr(value, "__dataclass_fields__"):
            for key in value.__dataclass_fields__:
                if key in ("api_key", "url", "token") and section in ("litellm", "database", "redis", "admin"):
                    continue  # secrets: documented as environment variables at the top
                assert f"{key}:" in text, f"{section}.{key}"
