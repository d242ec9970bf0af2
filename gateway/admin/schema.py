"""Request bodies of the admin API as pydantic models: declared once, validated strictly,
their JSON Schema in the OpenAPI document (gateway/admin/openapi.py). The CLI builds the
same models from its options, so both answer alike.

    UserCreate, UserUpdate, ModelCreate, SubscriptionCreate, SubscriptionUpdate, KeyCreate, KeyUpdate
    Body.parse(data) -> the fields the request set (a dict for Accounts), or 422 INVALID_REQUEST

Unknown fields, wrong types (no coercion: "10" is no integer, true no number), missing
required fields and values outside an enum are refused naming the field (`param`), with
what was expected and what was given; pydantic's own wording never reaches the client.
An optional field sent as null counts as absent, except a nullable one (a limit in a PATCH),
where null means "back to the default". Formats (ids, emails, model names) and "in the
future" are checked by the service layer, which the console calls too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.accounts.validation import invalid
from policies.records import SUBSCRIPTION_STATUSES

STATUSES = tuple(sorted(SUBSCRIPTION_STATUSES))


@dataclass(frozen=True)
class Expect:
    """What a field's type is, in the words of an error message."""

    words: str


def _instant(value: Any) -> datetime:
    """An ISO 8601 string (UTC when naive); never a number (pydantic would read a Unix time)."""
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("wrong_type", "wrong type")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PydanticCustomError("bad_value", "{text} is not an ISO 8601 date-time", {"text": repr(value[:40])}) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


Text = Annotated[StrictStr, StringConstraints(min_length=1), Expect("a non-empty string")]
Count = Annotated[StrictInt, Field(ge=0), Expect("a non-negative integer")]
Amount = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False), Expect("a non-negative number")]
Flag = Annotated[StrictBool, Expect("true or false")]
Instant = Annotated[datetime, BeforeValidator(_instant), Expect("an ISO 8601 date-time string")]
Names = Annotated[list[Text], Field(min_length=1), Expect("a non-empty list of non-empty strings")]
Period = Annotated[StrictStr, Expect("a period as LiteLLM writes budget_duration (30s, 1h, 1d, 7d, 1mo, monthly)")]
Status = Annotated[Literal[STATUSES], Expect("one of " + ", ".join(STATUSES))]  # type: ignore[valid-type]


def tidy(schema: dict[str, Any]) -> None:
    """No generated titles, no `default: null` (an absent field is "not set", not null)."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            del prop["default"]


def _expected(annotation: Any, metadata: list[Any]) -> str:
    for item in metadata:
        if isinstance(item, Expect):
            return item.words
    for arg in get_args(annotation):
        words = _expected(arg, list(getattr(arg, "__metadata__", ())))
        if words:
            return words
    return ""


def _nullable(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType) and NoneType in get_args(annotation)


def _describe(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=tidy)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields  # an unknown field stays, null or not, for extra="forbid" to name it
        return {k: v for k, v in data.items() if v is not None or k not in fields or _nullable(fields[k].annotation)}

    @classmethod
    def parse(cls, data: Any) -> dict[str, Any]:
        """The fields `data` set, validated; 422 INVALID_REQUEST naming the first problem."""
        try:
            return cls.model_validate(data).model_dump(exclude_unset=True)
        except ValidationError as exc:
            raise cls._problem(exc.errors(include_url=False), data) from None

    @classmethod
    def _problem(cls, errors: list[Any], data: Any) -> Exception:
        known = list(cls.model_fields)
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            return invalid(f"{unknown[0]}: unknown field (known: {', '.join(known)}).", unknown[0])
        error = errors[0]
        if not error["loc"]:  # the body as a whole
            if error["type"] == "model_type":
                return invalid(f"The request body must be a JSON object, got {_describe(data)}.", None)
            return invalid(error["msg"], None)
        name = str(error["loc"][0])
        if error["type"] == "missing":
            return invalid(f"{name}: required.", name)
        if error["type"] == "bad_value":
            return invalid(f"{name}: {error['msg']}.", name)
        field = cls.model_fields[name]
        return invalid(f"{name}: expected {_expected(field.annotation, field.metadata)}, got {_describe(data[name])}.", name)


class Patch(Body):
    """A PATCH: an empty body is refused."""

    model_config = ConfigDict(json_schema_extra=lambda schema: (tidy(schema), schema.update(minProperties=1)))

    @model_validator(mode="after")
    def _at_least_one(self) -> Patch:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_patch", "The body must set at least one of: {names}.",
                                      {"names": ", ".join(type(self).model_fields)})
        return self


_DEFAULT = " Null: the default from config.yaml (limits.defaults); 0 allows nothing."
_QUOTA_PERIOD = "Requests per calendar month in UTC (per month from reset_at when set)."
_PERIOD = ("The period of the budget (max_budget), as LiteLLM writes budget_duration: 30s, 1h, 1d, 7d, 30d, 1mo, "
           "monthly, ... (default and null: monthly, a calendar month in UTC).")


class UserCreate(Body):
    id: Text = Field(None, description="User id (default: a new UUID); the same id is used in LiteLLM.")
    email: Text = Field(description="Email address, unique (case-insensitive).")
    username: Text = Field(None, description="Display name (default: the email); LiteLLM's user_alias.")
    max_budget: Amount = Field(None, description="LiteLLM budget in USD (default: litellm.user_defaults.max_budget).")
    tpm_limit: Count = Field(None, description="Tokens per minute in LiteLLM (default: litellm.user_defaults.tpm_limit).")
    rpm_limit: Count = Field(None, description="Requests per minute in LiteLLM (default: litellm.user_defaults.rpm_limit).")
    max_parallel_requests: Count = Field(None, description="Requests of all the user's keys in flight at once." + _DEFAULT)
    budget_duration: Period = Field(None, description=_PERIOD)


class UserUpdate(Patch):
    is_active: Flag = Field(None, description="false deactivates the user: every key of theirs is refused at once.")
    rpm_limit: Count | None = Field(None, description="Requests per minute of all the user's keys together." + _DEFAULT)
    tpm_limit: Count | None = Field(None, description="Tokens per minute of all the user's keys together." + _DEFAULT)
    max_parallel_requests: Count | None = Field(
        None, description="Requests of all the user's keys together in flight at once." + _DEFAULT)
    max_budget: Amount | None = Field(None, description="Spend per period (budget_duration) in USD, all models."
                                      + _DEFAULT)
    budget_duration: Period | None = Field(None, description=_PERIOD)


class ModelCreate(Body):
    id: Text = Field(description="The LiteLLM model name, e.g. gpt-4o or openai/gpt-4o.")
    input_cost_per_token: Amount = Field(None, description="USD per prompt token, for budgets.")
    output_cost_per_token: Amount = Field(None, description="USD per completion token, for budgets.")


class SubscriptionCreate(Body):
    user_id: Text = Field(description="An existing user.")
    model_id: Text = Field(description="An existing model.")
    status: Status = Field(None, description="Initial status (default: active).")
    generate_api_key: Flag = Field(None, description="Also create an API key for this model, in the same transaction.")
    api_key_name: Text = Field(None, description="Name of the generated key.")
    quota_requests: Count = Field(None, description=_QUOTA_PERIOD + _DEFAULT)
    quota_tokens: Count = Field(None, description="Tokens per quota period (as quota_requests)." + _DEFAULT)
    max_budget: Amount = Field(None, description="Spend per budget_duration in USD (tokens x the model's cost per "
                               "token)." + _DEFAULT)
    reset_at: Instant = Field(None, description="Periods are counted from this instant (default: calendar months, or "
                              "budget_duration's alignment).")
    budget_duration: Period = Field(None, description=_PERIOD)


class SubscriptionUpdate(Patch):
    status: Status = Field(None, description="New status; anything but active refuses the model at once.")
    quota_requests: Count | None = Field(None, description=_QUOTA_PERIOD + _DEFAULT)
    quota_tokens: Count | None = Field(None, description="Tokens per quota period (as quota_requests)." + _DEFAULT)
    max_budget: Amount | None = Field(None, description="Spend per budget_duration in USD (tokens x the model's cost "
                                      "per token)." + _DEFAULT)
    reset_at: Instant | None = Field(None, description="Periods are counted from this instant; null: calendar months, "
                                     "or budget_duration's alignment.")
    budget_duration: Period | None = Field(None, description=_PERIOD)


class KeyCreate(Body):
    user_id: Text = Field(description="An existing, active user.")
    models: Names = Field(description="Models (or patterns such as openai/*) the key may use; each needs an active "
                          "subscription.")
    name: Text = Field(None, description="A name for the key.")
    expires_at: Instant = Field(None, description="When the key stops working (ISO 8601; UTC when no offset is given).")
    rpm_limit: Count = Field(None, description="Requests per minute of this key." + _DEFAULT)
    tpm_limit: Count = Field(None, description="Tokens per minute of this key." + _DEFAULT)
    max_parallel_requests: Count = Field(None, description="Requests of this key in flight at once." + _DEFAULT)


class KeyUpdate(Patch):
    rpm_limit: Count | None = Field(None, description="Requests per minute of this key." + _DEFAULT)
    tpm_limit: Count | None = Field(None, description="Tokens per minute of this key." + _DEFAULT)
    max_parallel_requests: Count | None = Field(None, description="Requests of this key in flight at once." + _DEFAULT)


BODIES: tuple[type[Body], ...] = (UserCreate, UserUpdate, ModelCreate, SubscriptionCreate, SubscriptionUpdate,
                                  KeyCreate, KeyUpdate)
