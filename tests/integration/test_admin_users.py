"""Users and LiteLLM: created with LiteLLM up, down, slow, failing, or answering either
"missing" shape; the reconciler heals errors by itself; key and subscription requests
sync first and fail cleanly (USER_NOT_FOUND_LITELLM) while LiteLLM still lacks the user."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from gateway.accounts.service import Accounts
from gateway.accounts.litellm import LiteLLMManagement
from tests.admin_support import (
    admin_config,
    admin_gateway,
    call,
    row_counts,
    unique_email,
)
from tests.support import eventually

pytestmark = pytest.mark.integration

SYNC_TIMESTAMPS = ("last_synced_at", "created_at", "updated_at")
NOT_FOUND_LITELLM = {
    "error": {
        "message": "Account setup in progress. Please try again in a moment.",
        "type": "service_unavailable_error",
        "param": None,
        "code": "USER_NOT_FOUND_LITELLM",
    }
}


def syncs(result: str) -> float:
    return REGISTRY.get_sample_value("maas_gateway_litellm_user_sync_total", {"result": result}) or 0.0


def failure_messages(cause: str) -> tuple[str, str]:
    """The failure's own words, or the management breaker's if the background reconciler's
    retries of other tests' leftover users happened to open it first."""
    return cause, "Service temporarily unavailable. Please try again later."


def without_times(user: dict) -> dict:
    return {k: v for k, v in user.items() if k not in SYNC_TIMESTAMPS}


@pytest.fixture
async def gateway(pool, postgres_url, redis_url, double):
    async with admin_gateway(postgres_url, redis_url, double.url) as gw:
        yield gw


async def sync_status(pool, user_id: str) -> str:
    return await pool.fetchval("SELECT sync_status FROM users WHERE id = $1", user_id)


async def test_user_created_with_litellm_up_is_synced_with_the_config_defaults(gateway, admin, double):
    email = unique_email()
    before = syncs("success")
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": email, "username": "Ada"})
    assert status == 201
    assert without_times(user) == {
        "id": user["id"], "username": "Ada", "email": email, "is_active": True,
        "max_budget": None, "tpm_limit": None, "rpm_limit": None, "max_parallel_requests": None, "budget_duration": None,
        "sync_status": "synced", "sync_error": None,
    }
    assert uuid.UUID(user["id"]).version == 4
    assert user["last_synced_at"] is not None
    info, new = double.calls_for(user["id"])
    assert (info.method, info.path, info.query) == ("GET", "/user/info", {"user_id": user["id"]})
    assert (new.method, new.path) == ("POST", "/user/new")
    assert new.body == {
        "user_id": user["id"], "user_email": email, "user_alias": "Ada",
        "max_budget": 100.0, "tpm_limit": 1000, "rpm_limit": 60, "auto_create_key": False,
    }
    assert syncs("success") == before + 1
    status, fetched = await call(admin, "GET", gateway.url + f"/admin/v1/users/{user['id']}")
    assert (status, fetched) == (200, user)


async def test_the_users_own_limits_go_to_litellm(gateway, admin, double):
    body = {"id": "ada-" + uuid.uuid4().hex[:6], "email": unique_email(), "max_budget": 5.5, "tpm_limit": 10, "rpm_limit": 2}
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json=body)
    assert status == 201 and user["id"] == body["id"] and user["max_budget"] == 5.5
    assert double.users[body["id"]]["max_budget"] == 5.5
    assert (double.users[body["id"]]["tpm_limit"], double.users[body["id"]]["rpm_limit"]) == (10, 2)


@pytest.mark.parametrize("shape", ["404", "empty_teams"])
async def test_each_missing_shape_of_user_info_leads_to_user_new(gateway, admin, double, shape):
    double.missing_shape = shape
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    assert (status, user["sync_status"]) == (201, "synced")
    assert [(c.method, c.path) for c in double.calls_for(user["id"])] == [("GET", "/user/info"), ("POST", "/user/new")]
    assert user["id"] in double.users


async def test_an_existing_user_in_litellm_is_not_created_again(gateway, admin, double):
    user_id = "known-" + uuid.uuid4().hex[:6]
    double.users[user_id] = {"user_id": user_id}
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"id": user_id, "email": unique_email()})
    assert (status, user["sync_status"]) == (201, "synced")
    assert [(c.method, c.path) for c in double.calls_for(user_id)] == [("GET", "/user/info")]


async def test_already_exists_from_user_new_is_success(gateway, admin, double):
    double.already_exists = True
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    assert (status, user["sync_status"], user["sync_error"]) == (201, "synced", None)


async def test_litellm_down_leaves_the_user_usable_and_the_reconciler_heals_it(gateway, admin, double, pool):
    await double.set_down(True)
    failures = syncs("failure")
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    assert status == 201
    assert user["sync_status"] == "error"
    assert user["sync_error"] in failure_messages("Service temporarily unavailable. Please try again later. (LiteLLM /user/info unreachable)")
    assert syncs("failure") >= failures + 1
    status, fetched = await call(admin, "GET", gateway.url + f"/admin/v1/users/{user['id']}")
    assert status == 200 and fetched["email"] == user["email"]

    await double.set_down(False)  # nobody calls anything: the background reconciler must notice
    await eventually(lambda: _is_synced(pool, user["id"]), timeout=10)
    assert user["id"] in double.users
    row = await pool.fetchrow("SELECT sync_error, sync_attempts, next_sync_at FROM users WHERE id = $1", user["id"])
    assert tuple(row) == (None, 0, None)


async def _is_synced(pool, user_id: str) -> bool:
    return await sync_status(pool, user_id) == "synced"


async def test_slow_litellm_within_the_timeout_still_syncs(gateway, admin, double):
    double.slow = 0.1  # timeout_ms is 400
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    assert (status, user["sync_status"]) == (201, "synced")


async def test_litellm_slower_than_the_timeout_is_an_error_that_heals(gateway, admin, double, pool):
    double.slow = 1.0
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    assert (status, user["sync_status"]) == (201, "error")
    assert user["sync_error"] in failure_messages(
        "The model service did not answer in time. Please try again later. (LiteLLM /user/info did not answer in time)")
    double.slow = 0.0
    await eventually(lambda: _is_synced(pool, user["id"]), timeout=10)


async def test_litellm_500s_are_an_error_that_heals(gateway, admin, double, pool):
    double.fail_500 = True
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": unique_email()})
    assert (status, user["sync_status"]) == (201, "error")
    assert user["sync_error"] in failure_messages("Service temporarily unavailable. Please try again later. (LiteLLM /user/info answered 500)")
    double.fail_500 = False
    await eventually(lambda: _is_synced(pool, user["id"]), timeout=10)


async def test_users_first_seen_in_the_database_are_synced_by_the_reconciler(gateway, double, pool):
    user_id = "litemaas-" + uuid.uuid4().hex[:8]  # written by another system, never through us
    await pool.execute("INSERT INTO users (id, username, email) VALUES ($1, $1, $2)", user_id, unique_email())
    await eventually(lambda: _is_synced(pool, user_id), timeout=10)
    assert double.users[user_id]["user_email"].endswith("@example.com")


async def test_key_and_subscription_requests_sync_first_and_fail_cleanly_while_litellm_lacks_the_user(
    pool, postgres_url, redis_url, double, admin
):
    # A reconciler that never runs in this test: only the requests themselves can sync.
    async with admin_gateway(postgres_url, redis_url, double.url, litellm={"sync_interval_seconds": 3600}) as gw:
        await double.set_down(True)
        _, user = await call(admin, "POST", gw.url + "/admin/v1/users", json={"email": unique_email()})
        await call(admin, "POST", gw.url + "/admin/v1/models", json={"id": "sync-first-" + user["id"][:8]})
        model = "sync-first-" + user["id"][:8]
        await pool.execute("INSERT INTO subscriptions (id, user_id, model_id) VALUES ($1, $2, $3)",
                           str(uuid.uuid4()), user["id"], model)  # so that the key request gets past its checks
        counts = await row_counts(pool)

        async with admin.post(gw.url + "/admin/v1/keys", json={"user_id": user["id"], "models": [model]}) as r:
            assert (r.status, await r.json()) == (503, NOT_FOUND_LITELLM)
            assert r.headers["Retry-After"] == "5"
        await pool.execute("DELETE FROM subscriptions WHERE user_id = $1", user["id"])
        body = {"user_id": user["id"], "model_id": model, "generate_api_key": True}
        status, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions", json=body)
        assert (status, answer) == (503, NOT_FOUND_LITELLM)
        assert await row_counts(pool) == {**counts, "subscriptions": counts["subscriptions"] - 1}

        await double.set_down(False)
        status, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions", json=body)
        assert status == 201 and answer["api_key"]["key"].startswith("sk-")
        assert await sync_status(pool, user["id"]) == "synced"
        assert user["id"] in double.users


async def test_litellm_refusing_with_another_users_email_is_an_error_not_a_sync(gateway, admin, double):
    email = unique_email()
    double.users["someone-else"] = {"user_id": "someone-else", "user_email": email}
    status, user = await call(admin, "POST", gateway.url + "/admin/v1/users", json={"email": email})
    assert (status, user["sync_status"]) == (201, "error")
    assert user["sync_error"] == "LiteLLM already has a different user with this email address."


async def test_sync_switched_off_makes_no_management_call(pool, postgres_url, redis_url, double, admin):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm={"sync_users": False}) as gw:
        _, user = await call(admin, "POST", gw.url + "/admin/v1/users", json={"email": unique_email()})
        model = "local-" + user["id"][:8]
        await call(admin, "POST", gw.url + "/admin/v1/models", json={"id": model})
        body = {"user_id": user["id"], "model_id": model, "generate_api_key": True}
        status, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions", json=body)
        assert status == 201 and answer["api_key"]["key"].startswith("sk-")
        status, key = await call(admin, "POST", gw.url + "/admin/v1/keys", json={"user_id": user["id"], "models": [model]})
        assert status == 201
        assert gw.state.account_services.reconciler is None
    assert user["sync_status"] == "pending"
    assert double.management_calls() == []


async def test_failed_syncs_back_off_and_a_forced_pass_ignores_the_backoff(pool, postgres_url, redis_url, double):
    config = admin_config(postgres_url, redis_url, double.url, litellm={"sync_interval_seconds": 600})
    async with LiteLLMManagement(config) as management:
        accounts = Accounts(pool, config, management, None)
        await double.set_down(True)
        user = await accounts.create_user(email=unique_email())

        async def backoff() -> tuple[int, float]:
            row = await pool.fetchrow(
                "SELECT sync_attempts, extract(epoch FROM next_sync_at - now())::float8 AS wait FROM users WHERE id = $1",
                user["id"])
            return row["sync_attempts"], row["wait"]

        attempts, wait = await backoff()
        assert attempts == 1 and 590 < wait <= 600
        assert user["id"] not in {f["user_id"] for f in (await accounts.sync_pending(due_only=True))["failed"]}
        assert (await backoff())[0] == 1  # not due: untouched
        result = await accounts.sync_pending()
        assert {"user_id": user["id"], "error": user["sync_error"]} in result["failed"]
        attempts, wait = await backoff()
        assert attempts == 2 and 1190 < wait <= 1200  # doubled
        await double.set_down(False)

        async def healed() -> bool:  # the breaker may still be open for its reset period
            await accounts.sync_pending()
            return (await accounts.get_user(user["id"]))["sync_status"] == "synced"

        await eventually(healed, timeout=10, interval=0.05)
