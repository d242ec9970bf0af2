"""Request bodies of the admin API: declared once, validated strictly, described in OpenAPI.

Unknown fields, wrong types, missing required fields and values outside an enum are
refused with 422 INVALID_REQUEST naming the field (`param`). An optional field sent
as null counts as absent, except a `nullable` one (a limit in a PATCH), where null means
"back to the default". Formats (ids, emails, dates) are checked by the service
layer, so the CLI gets the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.accounts.validation import invalid
from policies.records import SUBSCRIPTION_STATUSES

_JSON_TYPES = {
    "string": {"type": "string", "minLength": 1},
    "date-time": {"type": "string", "format": "date-time"},
    "integer": {"type": "integer", "minimum": 0},
    "number": {"type": "number", "minimum": 0},
    "boolean": {"type": "boolean"},
    "string-list": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
}
_TYPE_WORDS = {
    "string": "a non-empty string",
    "date-time": "an ISO 8601 date-time string",
    "integer": "a non-negative integer",
    "number": "a non-negative number",
    "boolean": "true or false",
    "string-list": "a non-empty list of non-empty strings",
}


def _fits(kind: str, value: Any) -> bool:
    if kind in ("string", "date-time"):
        return isinstance(value, str) and value != ""
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string-list":
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
    raise AssertionError(kind)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()
    nullable: bool = False  # null is a value (the default from config.yaml), not absence

    def json_schema(self) -> dict:
        schema = dict(_JSON_TYPES[self.kind], description=self.description)
        if self.nullable:
            schema["type"] = [schema["type"], "null"]
        if self.enum:
            schema["enum"] = list(self.enum)
        return schema

    def check(self, value: Any) -> Any:
        if not _fits(self.kind, value):
            raise invalid(f"{self.name}: expected {_TYPE_WORDS[self.kind]}, got {_describe(value)}.", self.name)
        if self.enum and value not in self.enum:
            raise invalid(f"{self.name}: expected one of {', '.join(self.enum)}, got {_describe(value)}.", self.name)
        return value


@dataclass(frozen=True)
class Body:
    name: str  # the OpenAPI component's name
    fields: tuple[Field, ...]
    at_least_one: bool = False  # a PATCH: an empty body is refused

    def validate(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise invalid(f"The request body must be a JSON object, got {_describe(data)}.", None)
        known = {f.name: f for f in self.fields}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise invalid(f"{unknown[0]}: unknown field (known: {', '.join(known)}).", unknown[0])
        values = {}
        for field in self.fields:
            value = data.get(field.name)
            if value is None:
                if field.nullable and field.name in data:
                    values[field.name] = None
                    continue
                if field.required:
                    raise invalid(f"{field.name}: required.", field.name)
                continue
            values[field.name] = field.check(value)
        if self.at_least_one and not values:
            raise invalid(f"The body must set at least one of: {', '.join(known)}.", None)
        return values

    def json_schema(self) -> dict:
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: f.json_schema() for f in self.fields},
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            schema["required"] = required
        if self.at_least_one:
            schema["minProperties"] = 1
        return schema


def _describe(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


STATUSES = tuple(sorted(SUBSCRIPTION_STATUSES))
_DEFAULT = " Null: the default from config.yaml (limits.defaults); 0 allows nothing."
_PERIOD = ("The period of the quotas and budget, as LiteLLM writes budget_duration: 30s, 1h, 1d, 7d, 30d, 1mo, "
           "monthly, ... (default and null: monthly, a calendar month in UTC).")


def _rates(nullable: bool, scope: str) -> tuple[Field, ...]:
    return (
        Field("rpm_limit", "integer", f"Requests per minute of {scope}." + _DEFAULT, nullable=nullable),
        Field("tpm_limit", "integer", f"Tokens per minute of {scope}." + _DEFAULT, nullable=nullable),
        Field("max_parallel_requests", "integer", f"Requests of {scope} in flight at once." + _DEFAULT,
              nullable=nullable),
    )


def _quotas(nullable: bool) -> tuple[Field, ...]:
    return (
        Field("quota_requests", "integer", "Requests per period (budget_duration; from reset_at when set)."
              + _DEFAULT, nullable=nullable),
        Field("quota_tokens", "integer", "Tokens per period." + _DEFAULT, nullable=nullable),
        Field("max_budget", "number", "Spend per period in USD (tokens x the model's cost per token)." + _DEFAULT,
              nullable=nullable),
        Field("reset_at", "date-time", "Periods are counted from this instant (default: calendar months, or "
              "budget_duration's alignment).", nullable=nullable),
        Field("budget_duration", "string", _PERIOD, nullable=nullable),
    )

USER_CREATE = Body("UserCreate", (
    Field("id", "string", "User id (default: a new UUID); the same id is used in LiteLLM."),
    Field("email", "string", "Email address, unique (case-insensitive).", required=True),
    Field("username", "string", "Display name (default: the email); LiteLLM's user_alias."),
    Field("max_budget", "number", "LiteLLM budget in USD (default: litellm.user_defaults.max_budget)."),
    Field("tpm_limit", "integer", "Tokens per minute in LiteLLM (default: litellm.user_defaults.tpm_limit)."),
    Field("rpm_limit", "integer", "Requests per minute in LiteLLM (default: litellm.user_defaults.rpm_limit)."),
    Field("max_parallel_requests", "integer", "Requests of all the user's keys in flight at once." + _DEFAULT),
    Field("budget_duration", "string", _PERIOD),
))
USER_UPDATE = Body("UserUpdate", (
    Field("is_active", "boolean", "false deactivates the user: every key of theirs is refused at once."),
    *_rates(True, "all the user's keys together"),
    Field("max_budget", "number", "Spend per period (budget_duration) in USD, all models." + _DEFAULT, nullable=True),
    Field("budget_duration", "string", _PERIOD, nullable=True),
), at_least_one=True)
MODEL_CREATE = Body("ModelCreate", (
    Field("id", "string", "The LiteLLM model name, e.g. gpt-4o or openai/gpt-4o.", required=True),
    Field("input_cost_per_token", "number", "USD per prompt token, for budgets."),
    Field("output_cost_per_token", "number", "USD per completion token, for budgets."),
))
SUBSCRIPTION_CREATE = Body("SubscriptionCreate", (
    Field("user_id", "string", "An existing user.", required=True),
    Field("model_id", "string", "An existing model.", required=True),
    Field("status", "string", "Initial status (default: active).", enum=STATUSES),
    Field("generate_api_key", "boolean", "Also create an API key for this model, in the same transaction."),
    Field("api_key_name", "string", "Name of the generated key."),
    *_quotas(False),
))
SUBSCRIPTION_UPDATE = Body("SubscriptionUpdate", (
    Field("status", "string", "New status; anything but active refuses the model at once.", enum=STATUSES),
    *_quotas(True),
), at_least_one=True)
KEY_CREATE = Body("KeyCreate", (
    Field("user_id", "string", "An existing, active user.", required=True),
    Field("models", "string-list", "Models (or patterns such as openai/*) the key may use; each needs an active "
          "subscription.", required=True),
    Field("name", "string", "A name for the key."),
    Field("expires_at", "date-time", "When the key stops working (ISO 8601; UTC when no offset is given)."),
    *_rates(False, "this key"),
))
KEY_UPDATE = Body("KeyUpdate", _rates(True, "this key"), at_least_one=True)
