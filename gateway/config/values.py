"""The value types config.yaml's keys are made of, and the base every section shares.

YAML values are taken as written (strict): `port: "8080"` is a string, not a port; a number
is never a boolean. Every number is non-negative; `positive()`, `at_least(n)` and
`within(low, high)` narrow one key further and show in the JSON Schema as well. A secret is
set from the environment only: it is left out of the schema and of every repr.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import ConfigDict, Field, GetJsonSchemaHandler, Strict, model_validator
from pydantic.dataclasses import dataclass
from pydantic.json_schema import SkipJsonSchema

Count = Annotated[int, Strict(), Field(ge=0)]
Number = Annotated[float, Strict(), Field(ge=0)]  # an integer is a number too, stored as a float
Flag = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]
SecretText = SkipJsonSchema[str | None]


class Why(str):
    """A reason appended to a bound's error message, in parentheses."""


def positive() -> Any:
    return Field(gt=0)


def at_least(low: int) -> Any:
    return Field(ge=low)


def within(low: float, high: float) -> Any:
    """The interval (low, high]."""
    return Field(gt=low, le=high)


def secret() -> Any:
    """A field only the environment sets; marked so that the loader refuses it in the file."""
    return dataclasses.field(default=None, repr=False, metadata={"secret": True})


class Section:
    """The base of every section. One written with all its keys commented out is YAML null:
    all its defaults."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        return {} if data is None else data

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {"anyOf": [handler(core_schema), {"type": "null"}]}  # null: as the loader, all defaults


# The decorator of every section (`@section class XConfig(Section)`): frozen, unknown keys refused,
# a standard dataclass (dataclasses.replace works, and validates).
section = dataclass(frozen=True, config=ConfigDict(extra="forbid"))
