"""The JSON Schema of config.yaml, generated from the section classes.

docs/config.schema.json is this module's output, committed (tests/unit/test_config_schema.py
checks that it is current); config.yaml's first line points editors at it. Regenerate with
`make config-schema` (python -m gateway.config.schema > docs/config.schema.json).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from gateway.config.sections import Config

SCHEMA_PATH = "docs/config.schema.json"  # relative to the repository's root


def json_schema() -> dict[str, Any]:
    schema = TypeAdapter(Config).json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://maas-gateway.example/config.schema.json",
        "title": "maas-gateway config.yaml",
        "description": "The gateway's configuration file. Secrets (DATABASE_URL, REDIS_URL, LITELLM_API_KEY, "
                       "GATEWAY_ADMIN_TOKEN, OIDC_CLIENT_SECRET, SESSION_SECRET) come only from the environment.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
