"""The JSON Schema of config.yaml, generated from the section classes.

docs/config.schema.json is this module's output, committed (tests/unit/test_config_schema.py
checks that it is current); config.yaml's first line points editors at it. Regenerate with
`make config-schema` (python -m gateway.config.schema > docs/config.schema.json).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from gateway.config.loading import ENVIRONMENT, SECRET_FIELDS
from gateway.config.sections import Config

def json_schema() -> dict[str, Any]:
    schema = TypeAdapter(Config).json_schema()
    top = schema.pop("anyOf")[0]  # the file itself is a mapping (sections may be null: all defaults)
    definitions = schema.pop("$defs")
    for name, path in ENVIRONMENT.items():  # an editor shows which variable overrides a key
        section, key = path.split(".")
        cls = Config.__pydantic_fields__[section].annotation
        properties = definitions[cls.__name__]["anyOf"][0]["properties"]  # type: ignore[union-attr]
        if key in properties:  # a secret has no property: the file may not set it
            properties[key]["description"] = f"The environment variable {name} overrides it."
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "maas-gateway config.yaml",
        "description": "The gateway's configuration file, every key commented in the repository's config.yaml. "
                       "Secrets come only from the environment: " + ", ".join(sorted(
                           name for name, path in ENVIRONMENT.items() if path in SECRET_FIELDS)) + ".",
        **{k: v for k, v in top.items() if k not in ("title", "description")},
        "$defs": definitions,
    }


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
