"""The admin API's pydantic models: the OpenAPI document made from them is valid OpenAPI 3.1,
it describes what the views answer, and a body's problems read as before (no pydantic text)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from openapi_spec_validator import validate

from gateway.accounts.views import key_view, model_view, subscription_view, user_view
from gateway.admin import responses, schema
from gateway.admin.openapi import document
from gateway.errors import AdminError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    validate(doc)  # raises on any schema error
    schemas = doc["components"]["schemas"]
    assert {m.__name__ for m in (*schema.BODIES, *responses.ANSWERS)} <= set(schemas)
    assert not any("title" in s for s in schemas.values())
    assert schemas["UserUpdate"]["minProperties"] == 1 and "minProperties" not in schemas["UserCreate"]
    assert schemas["UserUpdate"]["properties"]["rpm_limit"] == {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}],
        "description": "Requests per minute of all the user's keys together. Null: the default from config.yaml "
                       "(limits.defaults); 0 allows nothing.",
    }
    assert schemas["KeyCreate"]["properties"]["expires_at"]["format"] == "date-time"
    assert schemas["ApiKeyCreated"]["required"][-1] == "key" and "key" not in schemas["ApiKey"]["properties"]


ROWS = {
    "user": {"id": "u1", "username": "ann", "email": "ann@example.com", "is_active": True, "max_budget": None,
             "tpm_limit": 10, "rpm_limit": None, "max_parallel_requests": 2, "budget_duration": None, "sync_status": "synced",
             "sync_error": None, "last_synced_at": NOW, "created_at": NOW, "updated_at": NOW},
    "model": {"id": "gpt-4o", "name": "gpt-4o", "provider": None, "is_active": True, "input_cost_per_token": None,
              "output_cost_per_token": 0.5, "created_at": NOW},
    "subscription": {"id": "s1", "user_id": "u1", "model_id": "gpt-4o", "status": "active", "expires_at": None,
                     "quota_requests": 5, "quota_tokens": None, "max_budget": None, "reset_at": None,
                     "budget_duration": "7d", "used_requests": 1, "used_tokens": 0, "created_at": NOW, "updated_at": NOW},
    "key": {"id": "k1", "user_id": "u1", "name": None, "key_prefix": "sk-abcd", "models": ["gpt-4o"],
            "expires_at": NOW + timedelta(days=1), "is_active": True, "revoked_at": None, "last_used_at": None,
            "sync_status": "pending", "rpm_limit": None, "tpm_limit": None, "max_parallel_requests": None,
            "created_at": NOW},
}


@pytest.mark.parametrize(
    ("view", "row", "model"),
    [(user_view, "user", responses.User), (model_view, "model", responses.Model),
     (subscription_view, "subscription", responses.Subscription), (key_view, "key", responses.ApiKey)],
)
def test_every_view_is_what_its_answer_model_describes(view, row, model):
    answer = view(ROWS[row])
    assert set(answer) == set(model.model_fields)  # no field undocumented, none documented and missing
    model.model_validate(answer)


def test_a_created_key_is_described_with_its_key():
    answer = {**key_view(ROWS["key"]), "key": "sk-abcdefgh"}
    assert set(answer) == set(responses.ApiKeyCreated.model_fields)
    responses.SubscriptionCreated.model_validate(
        {"subscription": subscription_view(ROWS["subscription"]), "created": True, "api_key": answer})


def problem(body: type[schema.Body], data) -> tuple[int, str, str, str | None]:
    with pytest.raises(AdminError) as caught:
        body.parse(data)
    return caught.value.status, caught.value.code, caught.value.message, caught.value.param


@pytest.mark.parametrize(
    ("body", "data", "message", "param"),
    [
        (schema.UserUpdate, {}, "The body must set at least one of: is_active, rpm_limit, tpm_limit, "
                                "max_parallel_requests, max_budget, budget_duration.", None),
        (schema.UserUpdate, {"rpm_limit": "5"}, "rpm_limit: expected a non-negative integer, got '5'.", "rpm_limit"),
        (schema.KeyUpdate, {"tpm_limit": True}, "tpm_limit: expected a non-negative integer, got true.", "tpm_limit"),
        (schema.SubscriptionCreate, {"user_id": "u", "model_id": "m", "status": "paused"},
         "status: expected one of active, cancelled, denied, expired, inactive, pending, suspended, got 'paused'.",
         "status"),
        (schema.SubscriptionCreate, {"user_id": "u", "model_id": "m", "reset_at": 1700000000},
         "reset_at: expected an ISO 8601 date-time string, got 1700000000.", "reset_at"),  # never a Unix time
        (schema.KeyCreate, {"user_id": "u", "models": ["a"], "expires_at": "tomorrow"},
         "expires_at: 'tomorrow' is not an ISO 8601 date-time.", "expires_at"),
        (schema.KeyCreate, {"user_id": "u", "models": "a,b"},
         "models: expected a non-empty list of non-empty strings, got 'a,b'.", "models"),
        (schema.ModelCreate, {"id": "m", "input_cost_per_token": "0.1"},
         "input_cost_per_token: expected a non-negative number, got '0.1'.", "input_cost_per_token"),
        (schema.ModelCreate, {"id": "m", "output_cost_per_token": -0.5},
         "output_cost_per_token: expected a non-negative number, got -0.5.", "output_cost_per_token"),
        (schema.UserUpdate, {"max_budget": float("inf")},  # the CLI's --max-budget inf (JSON cannot carry it)
         "max_budget: expected a non-negative number, got inf.", "max_budget"),
        (schema.UserCreate, {"email": "a@example.com", "bogus": None},  # unknown, even when null
         "bogus: unknown field (known: id, email, username, max_budget, tpm_limit, rpm_limit, max_parallel_requests, "
         "budget_duration).", "bogus"),
    ],
)
def test_a_bodys_first_problem_names_the_field_the_expectation_and_the_value(body, data, message, param):
    assert problem(body, data) == (422, "INVALID_REQUEST", message, param)


def test_null_is_absent_except_where_it_means_the_default():
    assert schema.KeyCreate.parse({"user_id": "u", "models": ["a"], "rpm_limit": None, "expires_at": None}) == {
        "user_id": "u", "models": ["a"]}
    assert schema.KeyUpdate.parse({"rpm_limit": None}) == {"rpm_limit": None}
    assert schema.SubscriptionUpdate.parse({"reset_at": "2026-01-02T03:04:05"}) == {"reset_at": NOW}  # UTC when naive
    assert schema.UserCreate.parse({"email": "e@x", "max_budget": 3}) == {"email": "e@x", "max_budget": 3.0}
