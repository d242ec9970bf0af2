"""ConfigError, and pydantic's validation errors said the way an operator reads them.

One line, the key's dotted path first, then what was expected and what was given:
"litellm.timeout_ms: expected an integer, got 'fast'". Never pydantic's own wall of text.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from gateway.config.values import Why


class ConfigError(Exception):
    """A configuration value is missing, unknown or malformed; the message names its path."""


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dotted(loc: tuple[str | int, ...]) -> str:
    """('routes', 0, 'path') -> 'routes[0].path'"""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "dataclass": "a mapping",
    "dict": "a mapping",
    "tuple": "a list",
    "list": "a list",
}


def from_validation_error(root: type, error: ValidationError) -> ConfigError:
    """The first of pydantic's errors as a ConfigError (`root` is the class that was validated)."""
    first = error.errors(include_url=False)[0]
    kind, loc, given = first["type"], first["loc"], first.get("input")
    path = dotted(loc) or "config"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = ", ".join(sorted(f.name for f in dataclasses.fields(_class_at(root, loc[:-1]))))
        return ConfigError(f"{path}: unknown key (known: {known})")
    if kind == "missing":
        return ConfigError(f"{path}: required")
    if kind in ("literal_error", "enum"):
        allowed = ", ".join(re.findall(r"'([^']*)'", first["ctx"]["expected"]))
        return ConfigError(f"{path}: expected one of {allowed}, got {describe(given)}")
    if kind in ("greater_than", "greater_than_equal", "less_than_equal"):
        return ConfigError(f"{path}: {_bound_message(_field_at(root, loc), given)}")
    expected = _EXPECTED.get(kind.removesuffix("_type").removesuffix("_parsing"))
    if expected:
        return ConfigError(f"{path}: expected {expected}, got {describe(given)}")
    return ConfigError(f"{path}: {first['msg']}, got {describe(given)}")  # pragma: no cover - a type not used yet


def _bound_message(info: FieldInfo, given: Any) -> str:
    if given < 0:
        return f"must not be negative, got {given}"
    meta = info.metadata  # annotated_types' Gt, Ge, Le (as pydantic keeps a Field's bounds), and Why
    gt = next((m.gt for m in meta if hasattr(m, "gt")), None)
    le = next((m.le for m in meta if hasattr(m, "le")), None)
    ge = max((m.ge for m in meta if hasattr(m, "ge")), default=None)
    why = "".join(f" ({m})" for m in meta if isinstance(m, Why))
    if gt is not None and le is not None:
        return f"must be within ({gt:g}, {le:g}]{why}"
    if gt is not None:
        return f"must be positive{why}"
    return f"must be at least {ge}{why}"


def _field_at(root: type, loc: tuple[str | int, ...]) -> FieldInfo:
    return _class_at(root, loc[:-1]).__pydantic_fields__[loc[-1]]


def _class_at(root: type, loc: tuple[str | int, ...]) -> Any:
    """The section class found at `loc` below `root` (tuple items and optional values unwrapped)."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int):
            continue  # the item type was unwrapped with the tuple
        cls = _unwrap(cls.__pydantic_fields__[part].annotation)
    return cls


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) in (tuple, typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis)
    return tp
