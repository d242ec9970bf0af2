"""The admin API's surface: the token, the OpenAPI document, strict input handling, and
the full key staying out of logs, listings and the database."""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.admin_support import (
    TABLES,
    admin_client,
    admin_gateway,
    call,
    error,
    row_counts,
    unique_email,
)

pytestmark = pytest.mark.integration

# The design's list (design.md, "Admin API"), method and path.
DESIGN_ENDPOINTS = {
    ("post", "/admin/v1/users"), ("get", "/admin/v1/users/{id}"), ("patch", "/admin/v1/users/{id}"),
    ("post", "/admin/v1/models"), ("get", "/admin/v1/models"),
    ("post", "/admin/v1/subscriptions"), ("patch", "/admin/v1/subscriptions/{id}"),
    ("post", "/admin/v1/keys"), ("get", "/admin/v1/keys"), ("get", "/admin/v1/usage"), ("get", "/admin/v1/offenders"),
    ("patch", "/admin/v1/keys/{id}"), ("delete", "/admin/v1/keys/{id}"),
}
REQUESTS = [
    ("POST", "/admin/v1/users", {"email": "x@example.com"}), ("GET", "/admin/v1/users/u", None),
    ("PATCH", "/admin/v1/users/u", {"is_active": False}), ("POST", "/admin/v1/models", {"id": "m"}),
    ("GET", "/admin/v1/models", None), ("POST", "/admin/v1/subscriptions", {"user_id": "u", "model_id": "m"}),
    ("PATCH", "/admin/v1/subscriptions/s", {"status": "active"}), ("POST", "/admin/v1/keys", {"user_id": "u", "models": ["m"]}),
    ("GET", "/admin/v1/keys", None), ("GET", "/admin/v1/usage", None), ("GET", "/admin/v1/offenders", None),
    ("PATCH", "/admin/v1/keys/k", {"rpm_limit": 5}), ("DELETE", "/admin/v1/keys/k", None),
]
UNAUTHORIZED = error("authentication_error", "UNAUTHORIZED",
                     "Missing or wrong admin token: send 'Authorization: Bearer <GATEWAY_ADMIN_TOKEN>'.")


@pytest.fixture
async def gateway(pool, postgres_url, redis_url, double):
    async with admin_gateway(postgres_url, redis_url, double.url) as gw:
        yield gw


async def test_without_a_configured_token_the_admin_api_is_disabled_not_open(pool, postgres_url, redis_url, double):
    counts = await row_counts(pool)
    async with admin_gateway(postgres_url, redis_url, double.url, token=None) as gw, admin_client("anything") as client:
        for method, path, body in REQUESTS + [("GET", "/admin/v1/openapi.json", None)]:
            status, answer = await call(client, method, gw.url + path, json=body)
            assert (status, answer) == (404, error(
                "not_found_error", "ADMIN_API_DISABLED", "The admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it."
            )), path
    assert await row_counts(pool) == counts


@pytest.mark.parametrize("token", [None, "wrong", ""])
async def test_a_missing_or_wrong_token_is_401_for_every_endpoint(gateway, pool, token):
    counts = await row_counts(pool)
    async with admin_client(token) as client:
        for method, path, body in REQUESTS:
            assert await call(client, method, gateway.url + path, json=body) == (401, UNAUTHORIZED), path
        status, _ = await call(client, "GET", gateway.url + "/admin/v1/keys", headers={"Authorization": "Basic eDp5"})
        assert status == 401
    assert await row_counts(pool) == counts


async def test_the_openapi_document_describes_exactly_the_designs_endpoints(gateway):
    async with admin_client(None) as client:  # the document needs no token
        status, doc = await call(client, "GET", gateway.url + "/admin/v1/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert {(m, p) for p, ops in doc["paths"].items() for m in ops} == DESIGN_ENDPOINTS
    schemas = doc["components"]["schemas"]
    assert schemas["KeyCreate"]["required"] == ["user_id", "models"]
    assert schemas["KeyCreate"]["additionalProperties"] is False
    assert "key" in schemas["ApiKeyCreated"]["properties"] and "key" not in schemas["ApiKey"]["properties"]
    refs = {op["responses"][s]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for ops in doc["paths"].values() for op in ops.values() for s in op["responses"]}
    assert refs <= set(schemas)


def invalid(message: str, param: str | None) -> dict:
    return error("invalid_request_error", "INVALID_REQUEST", message, param)


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(gateway, admin, pool):
    _, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    model = "bad-input-" + uuid.uuid4().hex[:6]
    await call(admin, "POST", gateway.url + "/admin/v1/models", json={"id": model})
    uid = user["id"]
    cases = [
        ("POST", "/admin/v1/users", {"email": "a@example.com", "role": "admin"}, 422,
         invalid("role: unknown field (known: id, email, username, max_budget, tpm_limit, rpm_limit, max_parallel_requests, budget_duration).", "role")),
        ("POST", "/admin/v1/users", {"email": 42}, 422, invalid("email: expected a non-empty string, got 42.", "email")),
        ("POST", "/admin/v1/users", {"email": "a@example.com", "tpm_limit": "10"}, 422,
         invalid("tpm_limit: expected a non-negative integer, got '10'.", "tpm_limit")),
        ("POST", "/admin/v1/users", {"email": "a@example.com", "max_budget": True}, 422,
         invalid("max_budget: expected a non-negative number, got true.", "max_budget")),
        ("POST", "/admin/v1/users", {"email": "a@example.com", "budget_duration": "5 d"}, 422,
         invalid("budget_duration: expected a period as LiteLLM writes budget_duration, such as 30s, 1h, 1d, 7d, 30d, "
                 "1mo or monthly, of at most 100 years, got '5 d'.", "budget_duration")),
        ("PATCH", f"/admin/v1/users/{uid}", {"budget_duration": "0h"}, 422,
         invalid("budget_duration: expected a period as LiteLLM writes budget_duration, such as 30s, 1h, 1d, 7d, 30d, "
                 "1mo or monthly, of at most 100 years, got '0h'.", "budget_duration")),
        ("PATCH", f"/admin/v1/users/{uid}", {"budget_duration": "30000mo"}, 422,
         invalid("budget_duration: expected a period as LiteLLM writes budget_duration, such as 30s, 1h, 1d, 7d, 30d, "
                 "1mo or monthly, of at most 100 years, got '30000mo'.", "budget_duration")),
        ("PATCH", f"/admin/v1/users/{uid}", {"is_active": True, "max_budgt": None}, 422,
         invalid("max_budgt: unknown field (known: is_active, rpm_limit, tpm_limit, max_parallel_requests, "
                 "max_budget, budget_duration).", "max_budgt")),
        ("POST", "/admin/v1/users", {"username": "x"}, 422, invalid("email: required.", "email")),
        ("POST", "/admin/v1/users", {"email": "not-an-email"}, 422,
         invalid("email: 'not-an-email' is not a valid email address.", "email")),
        ("POST", "/admin/v1/users", {"id": "a b", "email": "a@example.com"}, 422, invalid("id: 'a b' is not a valid user id.", "id")),
        ("POST", "/admin/v1/users", {"id": uid, "email": unique_email()}, 409,
         error("conflict_error", "CONFLICT", f"A user with id {uid!r} already exists.", "id")),
        ("POST", "/admin/v1/users", {"email": user["email"].upper()}, 409,
         error("conflict_error", "CONFLICT", f"A user with email {user['email'].upper()!r} already exists.", "email")),
        ("POST", "/admin/v1/users", [], 422, invalid("The request body must be a JSON object, got a list.", None)),
        ("PATCH", f"/admin/v1/users/{uid}", {"is_active": "no"}, 422,
         invalid("is_active: expected true or false, got 'no'.", "is_active")),
        ("PATCH", "/admin/v1/users/nobody", {"is_active": False}, 404, error("not_found_error", "NOT_FOUND", "No user with id 'nobody'.")),
        ("GET", "/admin/v1/users/nobody", None, 404, error("not_found_error", "NOT_FOUND", "No user with id 'nobody'.")),
        ("POST", "/admin/v1/models", {"id": model}, 409,
         error("conflict_error", "CONFLICT", f"A model with id {model!r} already exists.", "id")),
        ("POST", "/admin/v1/models", {"id": "openai/*"}, 422, invalid("id: 'openai/*' is not a valid model name.", "id")),
        ("POST", "/admin/v1/subscriptions", {"user_id": "nobody", "model_id": model}, 404,
         error("not_found_error", "NOT_FOUND", "No user with id 'nobody'.", "user_id")),
        ("POST", "/admin/v1/subscriptions", {"user_id": uid, "model_id": "no-such-model"}, 404,
         error("not_found_error", "NOT_FOUND", "No model with id 'no-such-model'.", "model_id")),
        ("POST", "/admin/v1/subscriptions", {"user_id": uid, "model_id": model, "status": "paused"}, 422,
         invalid("status: expected one of active, cancelled, denied, expired, inactive, pending, suspended, got 'paused'.", "status")),
        ("POST", "/admin/v1/subscriptions", {"user_id": uid, "model_id": model, "status": "pending", "generate_api_key": True}, 422,
         invalid("generate_api_key: a key needs an active subscription.", "generate_api_key")),
        ("PATCH", "/admin/v1/subscriptions/nothing", {"status": "active"}, 404,
         error("not_found_error", "NOT_FOUND", "No subscription with id 'nothing'.")),
        ("POST", "/admin/v1/keys", {"user_id": uid, "models": []}, 422,
         invalid("models: expected a non-empty list of non-empty strings, got a list.", "models")),
        ("POST", "/admin/v1/keys", {"user_id": uid, "models": model}, 422,
         invalid(f"models: expected a non-empty list of non-empty strings, got {model!r}.", "models")),
        ("POST", "/admin/v1/keys", {"user_id": uid, "models": [model], "expires_at": "tomorrow"}, 422,
         invalid("expires_at: 'tomorrow' is not an ISO 8601 date-time.", "expires_at")),
        ("POST", "/admin/v1/keys", {"user_id": uid, "models": [model], "expires_at": "2001-01-01T00:00:00Z"}, 422,
         invalid("expires_at: must be in the future.", "expires_at")),
        ("POST", "/admin/v1/keys", {"user_id": "nobody", "models": [model]}, 404,
         error("not_found_error", "NOT_FOUND", "No user with id 'nobody'.", "user_id")),
        ("POST", "/admin/v1/keys", {"user_id": uid, "models": [model], "key": "sk-chosen"}, 422,
         invalid("key: unknown field (known: user_id, models, name, expires_at, rpm_limit, tpm_limit, max_parallel_requests).", "key")),
        ("GET", "/admin/v1/keys?user_id=nobody", None, 404, error("not_found_error", "NOT_FOUND", "No user with id 'nobody'.", "user_id")),
        ("GET", "/admin/v1/keys?owner=x", None, 422, invalid("owner: unknown query parameter (known: user_id).", "owner")),
        ("DELETE", "/admin/v1/keys/nothing", None, 404, error("not_found_error", "NOT_FOUND", "No API key with id 'nothing'.")),
    ]
    counts = await row_counts(pool)
    for method, path, body, status, expected in cases:
        assert await call(admin, method, gateway.url + path, json=body) == (status, expected), (method, path, body)
    status, answer = await call(admin, "POST", gateway.url + "/admin/v1/keys", data=b"{not json",
                                headers={"content-type": "application/json"})
    assert (status, answer) == (400, error("invalid_request_error", "INVALID_REQUEST", "The request body is not valid JSON."))
    assert await row_counts(pool) == counts


@pytest.mark.parametrize("auth", ["service_key", "passthrough"])
async def test_the_full_key_is_in_no_log_line_no_listing_and_not_in_the_database(
    postgres_url, redis_url, double, admin, pool, caplog, auth
):
    caplog.set_level(logging.DEBUG)
    async with admin_gateway(postgres_url, redis_url, double.url, litellm={"auth": auth}) as gateway:
        keys, listings = await make_and_list_keys(gateway, admin)
    dumps = [await pool.fetchval(f"SELECT coalesce(string_agg(t::text, '|'), '') FROM {t} t") for t in TABLES]
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert "API key created" in logged  # the key's creation was logged, by prefix
    for key in keys:
        assert all(key not in str(body) for _, body in listings)
        assert all(key not in dump for dump in dumps)
        assert key not in logged
        assert key[:7] in str(listings[0][1])


async def make_and_list_keys(gateway, admin) -> tuple[list[str], list]:
    _, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    model = "secret-" + uuid.uuid4().hex[:6]
    await call(admin, "POST", gateway.url + "/admin/v1/models", json={"id": model})
    status, answer = await call(admin, "POST", gateway.url + "/admin/v1/subscriptions",
                                json={"user_id": user["id"], "model_id": model, "generate_api_key": True})
    assert status == 201
    _, second = await call(admin, "POST", gateway.url + "/admin/v1/keys", json={"user_id": user["id"], "models": [model]})
    keys = [answer["api_key"]["key"], second["key"]]
    listings = [await call(admin, "GET", gateway.url + "/admin/v1/keys"),
                await call(admin, "GET", gateway.url + f"/admin/v1/keys?user_id={user['id']}"),
                await call(admin, "DELETE", gateway.url + f"/admin/v1/keys/{second['id']}")]
    return keys, listings
