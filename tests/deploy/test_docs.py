"""docs/deploy.md stays true: every environment variable, every config.yaml key, every tool."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from gateway.config import ENVIRONMENT, Config
from tests.deploy.tools import INSTALL, NPM_INSTALL, PIP_PACKAGES, ROOT

pytestmark = pytest.mark.unit

DOC = ROOT / "docs/deploy.md"


def config_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every leaf key of config.yaml, dotted; list items as `routes[].path`."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = prefix + f.name
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None
        if dataclasses.is_dataclass(tp):
            keys += config_keys(tp, key + ".")
        elif item is not None and dataclasses.is_dataclass(item):
            keys += config_keys(item, key + "[].")
        else:
            keys.append(key)
    return keys


def documented() -> set[str]:
    return set(re.findall(r"`([^`\s]+)`", DOC.read_text()))


def test_every_environment_variable_is_documented() -> None:
    assert set(ENVIRONMENT) - documented() == set()


def test_every_config_key_is_documented() -> None:
    keys = config_keys()
    assert len(keys) > 30
    assert set(keys) - documented() == set()


def test_a_section_per_deployment_path() -> None:
    headings = re.findall(r"^## (.+)$", DOC.read_text(), flags=re.M)
    for heading in ("Local: make run", "Docker Compose", "Kubernetes", "OpenShift", "Configuration reference", "Scaling"):
        assert heading in headings


def test_the_install_commands_of_every_tool_are_documented() -> None:
    text = DOC.read_text()
    for spec in PIP_PACKAGES:
        assert spec in text
    assert NPM_INSTALL in text
    for name, command in INSTALL.items():
        assert command.split()[-1] in text, (name, command)
