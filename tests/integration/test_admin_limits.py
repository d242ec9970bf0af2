"""Limits, quotas and prices set through the admin API and the CLI take effect at once on the proxy;
null puts a limit back to the default (limits.defaults in config.yaml)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import orjson
import pytest

from gateway.store.keys import key_digest
from policies.limits import Kind
from tests.admin_support import admin_gateway, call, error, unique_email
from tests.integration.test_admin_cli import cli, env  # noqa: F401 - the CLI runner and its fixture
from tests.support import bearer, seed_key

pytestmark = pytest.mark.integration


async def chat(url: str, key: str, model: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/chat/completions", headers=bearer(key),
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
        return r.status, orjson.loads(await r.read())


async def setup(admin, pool, url: str, **model_fields) -> tuple[dict, dict, dict]:
    """A model made by the admin API; its user, subscription and key seeded (sync_status synced)."""
    model = "limits-" + uuid.uuid4().hex[:8]
    status, created = await call(admin, "POST", url + "/admin/v1/models", json={"id": model, **model_fields})
    assert status == 201
    seeded = await seed_key(pool, models=[model])
    subscription = await pool.fetchrow("SELECT id, user_id, model_id FROM subscriptions WHERE user_id = $1",
                                       seeded.user_id)
    return created, dict(subscription), {"id": seeded.key_id, "key": seeded.key}


async def test_a_keys_rate_limit_set_by_patch_applies_at_once_and_null_takes_it_back(pool, postgres_url, redis_url,
                                                                                     fake_upstream, admin):
    async with admin_gateway(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False},
                             limits={"defaults": {"key": {"max_parallel_requests": 50}}}) as gw:
        _, subscription, key = await setup(admin, pool, gw.url)
        model = subscription["model_id"]
        assert (await chat(gw.url, key["key"], model))[0] == 200
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/keys/{key['id']}", json={"rpm_limit": 0})
        assert (status, view["rpm_limit"], view["tpm_limit"], view["max_parallel_requests"]) == (200, 0, None, None)
        status, body = await chat(gw.url, key["key"], model)
        assert (status, body) == (429, error("rate_limit_error", "RATE_LIMITED", "Too many requests. Please wait before "
                                             "retrying. (the requests per minute of this API key (0) is reached)"))
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/keys/{key['id']}", json={"rpm_limit": None})
        assert (status, view["rpm_limit"]) == (200, None)
        assert (await chat(gw.url, key["key"], model))[0] == 200
        status, body = await call(admin, "PATCH", f"{gw.url}/admin/v1/keys/{key['id']}", json={})
        assert (status, body) == (422, error("invalid_request_error", "INVALID_REQUEST", "The body must set at least one "
                                             "of: rpm_limit, tpm_limit, max_parallel_requests."))


async def test_subscription_quotas_and_a_users_budget_from_the_admin_api(pool, postgres_url, redis_url, fake_upstream,
                                                                        admin):
    async with admin_gateway(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False}) as gw:
        model, subscription, key = await setup(admin, pool, gw.url, input_cost_per_token=0.5, output_cost_per_token=1.0)
        assert (model["input_cost_per_token"], model["output_cost_per_token"]) == (0.5, 1.0)
        await gw.state.limiter.load_prices(gw.state.pool)  # else within limiter.PRICES_REFRESH_SECONDS
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/subscriptions/{subscription['id']}",
                                  json={"quota_requests": 1, "reset_at": "2026-01-15T00:00:00Z"})
        assert (status, view["quota_requests"], view["reset_at"], view["status"]) == (
            200, 1, "2026-01-15T00:00:00+00:00", "active")
        assert (await chat(gw.url, key["key"], model["id"]))[0] == 200
        status, body = await chat(gw.url, key["key"], model["id"])
        assert status == 429 and body["error"]["code"] == "QUOTA_EXCEEDED"
        assert "request quota of your subscription to this model (1) is used up; it resets at " in body["error"]["message"]
        assert body["error"]["message"].endswith(" 00:00 UTC)")  # months from the 15th, midnight UTC

        await call(admin, "PATCH", f"{gw.url}/admin/v1/subscriptions/{subscription['id']}", json={"quota_requests": None})
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/users/{subscription['user_id']}",
                                  json={"max_budget": 10.0, "max_parallel_requests": 3})
        assert (status, view["max_budget"], view["max_parallel_requests"], view["is_active"]) == (200, 10.0, 3, True)
        # the fake's answer: 5 prompt + 7 completion tokens = 2.5 + 7 = 9.5 USD, under 10: admitted, then spent
        assert (await chat(gw.url, key["key"], model["id"]))[0] == 200
        await gw.state.limiter.settle()
        assert (await chat(gw.url, key["key"], model["id"]))[0] == 200  # 9.5 < 10 still admits
        await gw.state.limiter.settle()
        status, body = await chat(gw.url, key["key"], model["id"])
        assert status == 429 and body["error"]["message"].startswith(
            "Your usage quota is used up. Contact your administrator to raise it, or wait for it to reset. "
            "(the budget of your account ($10) is used up; it resets at ")


async def test_limits_from_the_command_line(env, pool):  # noqa: F811 - the fixture
    email = unique_email("cli-limits")
    code, out, err = await cli(env, "users", "create", "--email", email, "--max-parallel-requests", "2", "--json")
    assert (code, err) == (0, "")
    user = orjson.loads(out)
    assert user["max_parallel_requests"] == 2
    model = "cli-limits-" + uuid.uuid4().hex[:6]
    code, out, _ = await cli(env, "models", "add", model, "--input-cost-per-token", "0.001", "--json")
    assert code == 0 and orjson.loads(out)["input_cost_per_token"] == 0.001
    code, out, _ = await cli(env, "subscriptions", "create", "--user", user["id"], "--model", model,
                             "--quota-tokens", "5000", "--json")
    subscription = orjson.loads(out)["subscription"]
    assert (code, subscription["quota_tokens"], subscription["used_tokens"]) == (0, 5000, 0)
    code, out, _ = await cli(env, "subscriptions", "set-limits", subscription["id"], "--quota-tokens", "default", "--json")
    assert code == 0 and orjson.loads(out)["quota_tokens"] is None
    code, out, _ = await cli(env, "keys", "create", "--user", user["id"], "--models", model, "--rpm-limit", "7", "--json")
    key = orjson.loads(out)
    assert (code, key["rpm_limit"]) == (0, 7)
    code, out, _ = await cli(env, "keys", "set-limits", key["id"], "--tpm-limit", "100", "--json")
    assert code == 0 and (orjson.loads(out)["rpm_limit"], orjson.loads(out)["tpm_limit"]) == (7, 100)
    code, out, _ = await cli(env, "users", "set-limits", user["id"], "--max-parallel-requests", "default", "--json")
    assert code == 0 and orjson.loads(out)["max_parallel_requests"] is None


def next_monday() -> str:
    today = datetime.now(timezone.utc).date()
    return (today + timedelta(days=7 - today.weekday())).strftime("%Y-%m-%d 00:00 UTC")


async def test_a_budget_duration_set_by_the_admin_api_is_the_budgets_period(pool, postgres_url, redis_url, fake_upstream,
                                                                            admin):
    async with admin_gateway(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False}) as gw:
        model, subscription, key = await setup(admin, pool, gw.url, input_cost_per_token=0.5, output_cost_per_token=1.0)
        await gw.state.limiter.load_prices(gw.state.pool)  # else within limiter.PRICES_REFRESH_SECONDS
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/subscriptions/{subscription['id']}",
                                  json={"quota_requests": 5, "max_budget": 9.0, "budget_duration": "weekly"})
        assert (status, view["quota_requests"], view["budget_duration"]) == (200, 5, "weekly")
        first = await chat(gw.url, key["key"], model["id"])  # 9.5 USD (5 x 0.5 + 7 x 1.0): over 9 once answered
        assert first[0] == 200
        await gw.state.limiter.settle()
        status, body = await chat(gw.url, key["key"], model["id"])
        assert (status, body) == (429, error(
            "rate_limit_error", "QUOTA_EXCEEDED", "Your usage quota is used up. Contact your administrator to raise it, "
            "or wait for it to reset. (the budget of your subscription to this model ($9) is used up; "
            f"it resets at {next_monday()})"))
        # the request quota stays a calendar month (design.md), whatever the budget's period
        checks = gw.state.limiter.checks(gw.state.store.cached(key_digest(key["key"])), model["id"], time.time())
        quota = next(c for c in checks if c.kind is Kind.QUOTA_REQUESTS)
        month = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        assert quota.starts == month.timestamp()
        # null: back to the calendar month (the column's 'monthly'); no subscription budget
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/subscriptions/{subscription['id']}",
                                  json={"quota_requests": 3, "max_budget": None, "budget_duration": None})
        assert (status, view["budget_duration"]) == (200, "monthly")
        # the user's budget per day: 9.5 USD an answer (5 x 0.5 + 7 x 1.0); the day's recorded spend counts
        await gw.state.usage.flush()
        status, view = await call(admin, "PATCH", f"{gw.url}/admin/v1/users/{subscription['user_id']}",
                                  json={"max_budget": 19.0, "budget_duration": "1d"})
        assert (status, view["max_budget"], view["budget_duration"]) == (200, 19.0, "1d")
        assert (await chat(gw.url, key["key"], model["id"]))[0] == 200  # 9.5 spent this day, under 19
        await gw.state.limiter.settle()
        status, body = await chat(gw.url, key["key"], model["id"])
        tomorrow = (datetime.now(timezone.utc).date() + timedelta(days=1)).strftime("%Y-%m-%d 00:00 UTC")
        assert (status, body) == (429, error(
            "rate_limit_error", "QUOTA_EXCEEDED", "Your usage quota is used up. Contact your administrator to raise it, "
            f"or wait for it to reset. (the budget of your account ($19) is used up; it resets at {tomorrow})"))
