"""What the admin API answers, as pydantic models: the source of the OpenAPI document's
response schemas. The answers themselves are made by gateway/accounts/views.py (JSON-ready
dicts); tests/unit/test_admin_models.py checks each view against its model here.
Every field is always present (null when it has no value).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.admin.schema import STATUSES, tidy

Sync = Literal["pending", "synced", "error"]


class Answer(BaseModel):
    model_config = ConfigDict(json_schema_extra=tidy)  # clients must take fields added later: no additionalProperties


class User(Answer):
    id: str
    username: str
    email: str
    is_active: bool
    max_budget: float | None
    tpm_limit: int | None
    rpm_limit: int | None
    max_parallel_requests: int | None
    budget_duration: str | None = Field(description="The period of the user's budget, as LiteLLM writes it; null: monthly.")
    sync_status: Sync = Field(description="Whether LiteLLM has the user; error heals in the background.")
    sync_error: str | None
    last_synced_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class Model(Answer):
    id: str
    name: str | None
    provider: str | None
    is_active: bool
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    created_at: datetime | None


class ModelList(Answer):
    data: list[Model]


class Subscription(Answer):
    id: str
    user_id: str
    model_id: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    expires_at: datetime | None
    quota_requests: int | None
    quota_tokens: int | None
    max_budget: float | None
    reset_at: datetime | None
    budget_duration: str | None = Field(description="The period of the quotas and budget, as LiteLLM writes it.")
    used_requests: int
    used_tokens: int
    created_at: datetime | None
    updated_at: datetime | None


class ApiKey(Answer):
    id: str
    user_id: str
    name: str | None
    key_prefix: str = Field(description="The first 7 characters, for display.")
    models: list[str]
    expires_at: datetime | None
    is_active: bool
    revoked_at: datetime | None
    last_used_at: datetime | None
    sync_status: Sync
    status: Literal["active", "revoked", "inactive", "expired"]
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    created_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The full key: shown once, never again.")


class ApiKeyList(Answer):
    data: list[ApiKey]


class SubscriptionCreated(Answer):
    subscription: Subscription
    created: bool
    api_key: ApiKeyCreated = Field(None, description="Only when generate_api_key was true and the subscription is new.")


class Usage(Answer):
    day: date
    key_id: str
    user_id: str
    model_id: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    spend: float = Field(description="USD: tokens x the model's cost per token.")


class UsageList(Answer):
    data: list[Usage]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class Offender(Answer):
    kind: Literal["key", "address"]
    id: str = Field(description="The key's id, or the client address.")
    refused: int = Field(description="Model access refusals (key) or failed authentications (address).")


class OffenderList(Answer):
    data: list[Offender]
    next_cursor: None


class ErrorDetail(Answer):
    message: str
    type: str
    param: str | None
    code: str


class Error(Answer):
    error: ErrorDetail


ANSWERS: tuple[type[Answer], ...] = (User, Model, ModelList, Subscription, ApiKey, ApiKeyCreated, ApiKeyList,
                                     SubscriptionCreated, Usage, UsageList, Offender, OffenderList, Error)
