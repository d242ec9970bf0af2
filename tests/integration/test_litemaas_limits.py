"""LiteMaaS mode's limits, quotas and usage, on a database built from LiteMaaS's DDL: its
subscriptions' quotas (0 = none set), its users' and keys' limits (LiteMaaS's defaults included)
held by gateway/limits/limiter.py, and usage recorded in the schema maas_gateway with LiteMaaS's own
used_requests / used_tokens / last_used_at kept current."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timedelta, timezone

import asyncpg
import orjson
import pytest

from gateway.store import db
from gateway.store import litemaas as litemaas_mode
from gateway.config import AdminConfig
from gateway.store.keys import hash_key
from policies.limits import NO_LIMITS, Limits, period
from tests import litemaas_support as litemaas
from tests.integration.test_litemaas import (  # noqa: F401 - http: a fixture
    ADMIN_TOKEN, CONTRACT_SECONDS, a_user_with_key, chat, gateways, http, install_triggers, litemaas_config,
)
from tests.support import bearer, eventually, running_gateway

pytestmark = pytest.mark.integration


async def post(http, url: str, key: str, body: dict | None = None) -> tuple[int, dict, dict | None]:
    async with http.post(url + "/v1/chat/completions", json=body or chat("gpt-4o-mini"), headers=bearer(key)) as r:
        data = await r.read()
        return r.status, dict(r.headers), (None if r.status == 200 else orjson.loads(data))


def rate_limited(detail: str) -> dict:
    return {"error": {"message": f"Too many requests. Please wait before retrying. ({detail})",
                      "type": "rate_limit_error", "param": None, "code": "RATE_LIMITED"}}


def quota_exceeded(detail: str) -> dict:
    return {"error": {"message": "Your usage quota is used up. Contact your administrator to raise it, or wait for it "
                                 f"to reset. ({detail})", "type": "rate_limit_error", "param": None,
                      "code": "QUOTA_EXCEEDED"}}


async def record(url: str, key: litemaas.LiteMaaSKey):
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        return await db.load_key(pool, hash_key(key.key), query=litemaas_mode.KEY_QUERY)
    finally:
        await pool.close()


async def test_the_key_query_reads_litemaas_limits_and_its_quota_0_as_none_set(litemaas_url, conn):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"])
    await conn.execute("UPDATE subscriptions SET quota_requests = 0, quota_tokens = 0 WHERE model_id = 'gpt-4o'")
    await conn.execute("UPDATE api_keys SET rpm_limit = 7, max_parallel_requests = 2, max_budget = 5 WHERE id = $1",
                       key.id)
    found = await record(litemaas_url, key)
    # LiteMaaS's users: rpm 60, tpm 10000, budget 100 (its column defaults, as its sign-in writes them)
    assert found.user_limits == Limits(rpm_limit=60, tpm_limit=10000, max_budget=100.0)
    assert found.limits == Limits(rpm_limit=7, max_parallel_requests=2, max_budget=5.0)  # per calendar month
    reset_at = await conn.fetchval("SELECT extract(epoch FROM reset_at)::float8 FROM subscriptions "
                                   "WHERE model_id = 'gpt-4o-mini' AND user_id = $1", key.user_id)
    mini, full = found.subscriptions["gpt-4o-mini"], found.subscriptions["gpt-4o"]
    assert (mini.limits, mini.reset_at) == (Limits(quota_requests=10000, quota_tokens=1000000), reset_at)
    assert full.limits is NO_LIMITS  # LiteMaaS's 0: no quota set, not "nothing allowed"


async def test_a_subscription_quota_of_n_requests_refuses_the_next_with_quota_exceeded(litemaas_url, conn, redis_url,
                                                                                      fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    await conn.execute("UPDATE subscriptions SET quota_requests = 2 WHERE user_id = $1", key.user_id)
    reset_at = await conn.fetchval("SELECT extract(epoch FROM reset_at)::float8 FROM subscriptions WHERE user_id = $1",
                                   key.user_id)
    async with gateways(litemaas_url, redis_url, fake_upstream.url, count=2) as [one, two]:
        assert [(await post(http, one.url, key.key))[0] for _ in range(2)] == [200, 200]
        when = datetime.fromtimestamp(period(datetime.now(timezone.utc).timestamp(), reset_at)[1], timezone.utc)
        for gw in (one, two):  # spent on one instance, refused on both
            status, headers, body = await post(http, gw.url, key.key)
            assert (status, body) == (429, quota_exceeded(
                "the request quota of your subscription to this model (2) is used up; "
                f"it resets at {when.strftime('%Y-%m-%d %H:%M UTC')}"))
            assert headers["x-should-retry"] == "false" and "Retry-After" not in headers
    assert len(fake_upstream.seen) == 2


async def test_a_subscription_with_quota_0_has_no_quota(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    # as LiteMaaS's admin flow creates it: active, no quotas given (the columns' DEFAULT 0)
    await conn.execute("UPDATE subscriptions SET quota_requests = DEFAULT, quota_tokens = DEFAULT WHERE user_id = $1",
                       key.user_id)
    assert await conn.fetchval("SELECT quota_requests + quota_tokens FROM subscriptions WHERE user_id = $1",
                               key.user_id) == 0
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        answers = [await post(http, gw.url, key.key) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    # the binding limits are the user's (LiteMaaS's defaults), not a quota of 0
    assert [(h["x-ratelimit-limit-requests"], h["x-ratelimit-limit-tokens"]) for _, h, _ in answers] == [
        ("60", "10000")] * 3


async def test_litemaas_default_user_rpm_of_60_holds_across_instances(litemaas_url, conn, redis_url, fake_upstream,
                                                                       http):
    await litemaas.add_model(conn, "gpt-4o-mini")
    user_id = await conn.fetchval(  # only what LiteMaaS's sign-in sets: the limits are the columns' defaults
        """INSERT INTO users (username, email, oauth_provider, oauth_id) VALUES ('dflt', 'dflt@example.com',
           'openshift', 'dflt') RETURNING id""")
    assert await conn.fetchval("SELECT rpm_limit FROM users WHERE id = $1", user_id) == 60
    await litemaas.subscribe(conn, user_id, "gpt-4o-mini")
    key = await litemaas.add_key(conn, user_id, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    async with gateways(litemaas_url, redis_url, fake_upstream.url, count=2) as gws:
        # a burst that ends more than a second into the next minute would see 60 x (1 - elapsed/60) of
        # the last minute's count: start it early in a minute, so 15 s of a busy machine stay exact
        await eventually(lambda: time.time() % 60 < 45, timeout=20)
        answers = await asyncio.gather(*(post(http, gws[i % 2].url, key.key) for i in range(75)))
    statuses = [status for status, _, _ in answers]
    assert (statuses.count(200), statuses.count(429)) == (60, 15), statuses
    for status, headers, body in answers:
        if status == 429:
            assert body == rate_limited("the requests per minute of your account (60) is reached")
            assert 1 <= int(headers["Retry-After"]) <= 60


async def test_a_users_rpm_limit_holds_and_a_change_is_seen_within_1s(litemaas_url, conn, redis_url, fake_upstream,
                                                                     http):
    await install_triggers(litemaas_url)
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    await conn.execute("UPDATE users SET rpm_limit = 3 WHERE id = $1", key.user_id)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        answers = [await post(http, gw.url, key.key) for _ in range(4)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 429]
        assert answers[-1][2] == rate_limited("the requests per minute of your account (3) is reached")
        await conn.execute("UPDATE users SET rpm_limit = 100 WHERE id = $1", key.user_id)  # an admin in LiteMaaS

        async def served() -> bool:
            return (await post(http, gw.url, key.key))[0] == 200

        await eventually(served, timeout=CONTRACT_SECONDS)


async def test_a_keys_max_parallel_requests_holds(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    await conn.execute("UPDATE api_keys SET max_parallel_requests = 1 WHERE id = $1", key.id)
    fake_upstream.chunk_gap = 0.3
    slots = f"maas:lim:{{u:{key.user_id}}}:key:{key.id}:par"
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        slow = asyncio.create_task(post(http, gw.url, key.key, {**chat("gpt-4o-mini"), "stream": True}))
        await eventually(lambda: gw.state.redis.zcard(slots), timeout=10)  # the stream holds the key's one slot
        status, headers, body = await post(http, gw.url, key.key)
        assert (status, body, headers["Retry-After"]) == (
            429, rate_limited("the concurrent requests of this API key (1) is reached"), "1")
        assert (await slow)[0] == 200
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        assert (await post(http, gw.url, key.key))[0] == 200


async def test_usage_is_recorded_in_the_gateway_schema_and_litemaas_used_columns_kept(litemaas_url, conn, redis_url,
                                                                                    fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"])
    fake_upstream.virtual_keys.add(key.key)
    config = litemaas_config(litemaas_url, redis_url, fake_upstream.url)
    async with running_gateway(dataclasses.replace(config, admin=AdminConfig(token=ADMIN_TOKEN))) as gw:
        for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"):  # 5 + 7 tokens each
            assert (await post(http, gw.url, key.key, chat(model)))[0] == 200
        assert await gw.state.usage.flush() == 2
        async with http.get(f"{gw.url}/admin/v1/usage?user_id={key.user_id}", headers=bearer(ADMIN_TOKEN)) as r:
            status, listed = r.status, await r.json()
    today = datetime.now(timezone.utc).date()
    row = {"day": today.isoformat(), "key_id": str(key.id), "user_id": str(key.user_id), "model_id": "gpt-4o",
           "requests": 1, "prompt_tokens": 5, "completion_tokens": 7, "spend": 0.0}
    assert (status, listed) == (200, {"data": [row, {**row, "model_id": "gpt-4o-mini", "requests": 2,
                                                     "prompt_tokens": 10, "completion_tokens": 14}],
                                      "next_cursor": None})
    assert await conn.fetchval("SELECT count(*) FROM maas_gateway.usage_daily") == 2
    assert await conn.fetchval("SELECT to_regclass('public.usage_daily')") is None
    used = await conn.fetch("SELECT model_id, used_requests, used_tokens FROM subscriptions WHERE user_id = $1 "
                            "ORDER BY model_id", key.user_id)
    assert [tuple(r) for r in used] == [("gpt-4o", 1, 12), ("gpt-4o-mini", 2, 24)]
    last_used = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", key.id)
    assert abs((datetime.now(timezone.utc) - last_used).total_seconds()) < 60


async def test_litemaas_budget_durations_are_the_periods_and_monthly_is_the_calendar_month(litemaas_url, conn):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"])
    await conn.execute("UPDATE users SET budget_duration = '1d' WHERE id = $1", key.user_id)
    await conn.execute("UPDATE subscriptions SET budget_duration = 'weekly' WHERE model_id = 'gpt-4o' AND user_id = $1",
                       key.user_id)
    found = await record(litemaas_url, key)
    assert found.user_limits == Limits(rpm_limit=60, tpm_limit=10000, max_budget=100.0, budget_duration="1d")
    assert found.subscriptions["gpt-4o"].limits.budget_duration == "weekly"
    assert found.subscriptions["gpt-4o-mini"].limits.budget_duration is None  # LiteMaaS's 'monthly'


async def set_key_limits(conn, key: litemaas.LiteMaaSKey, **values) -> None:
    """As LiteMaaS's api-key service updates a key: JSON columns written with JSON.stringify."""
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(values))
    await conn.execute(f"UPDATE api_keys SET {assignments} WHERE id = $1", key.id,
                       *(v if isinstance(v, (int, float, str)) or v is None else orjson.dumps(v).decode()
                         for v in values.values()))


async def test_the_key_query_reads_a_keys_own_budget_per_model_limits_and_a_subscriptions_rates(litemaas_url, conn):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"])
    await set_key_limits(conn, key, max_budget=20, budget_duration="1d",
                         model_rpm_limit={"gpt-4o-mini": 2, "gpt-4o": "many"},  # a string is not a limit
                         model_tpm_limit={"gpt-4o": 500},
                         model_max_budget={"gpt-4o-mini": {"budgetLimit": 5, "timePeriod": "7d"},
                                           "llama": {"budget_limit": 1.5, "time_period": "monthly"}})
    await conn.execute("UPDATE subscriptions SET rpm_limit = 3, tpm_limit = 0 WHERE model_id = 'gpt-4o' "
                       "AND user_id = $1", key.user_id)
    found = await record(litemaas_url, key)
    assert found.limits == Limits(max_budget=20.0, budget_duration="1d")
    assert dict(found.model_limits) == {
        "gpt-4o": Limits(tpm_limit=500),
        "gpt-4o-mini": Limits(rpm_limit=2, max_budget=5.0, budget_duration="7d"),
        "llama": Limits(max_budget=1.5),  # LiteLLM's snake_case; monthly: the default period
    }
    assert found.subscriptions["gpt-4o"].limits.rpm_limit == 3
    assert found.subscriptions["gpt-4o"].limits.tpm_limit is None  # LiteMaaS's 0: none set
    await set_key_limits(conn, key, model_rpm_limit=["not", "an", "object"], model_tpm_limit=None,
                         model_max_budget=None)
    assert dict((await record(litemaas_url, key)).model_limits) == {}
    # what no counter or calendar holds is no limit, not a failed lookup (a 500 on every request)
    await set_key_limits(conn, key, budget_duration="30000mo", model_rpm_limit='{"gpt-4o-mini": 1e400, "gpt-4o": 3}')
    found = await record(litemaas_url, key)
    assert found.limits == Limits(max_budget=20.0)  # a period of 2,500 years counts per calendar month
    assert dict(found.model_limits) == {"gpt-4o": Limits(rpm_limit=3)}


async def test_a_keys_per_model_rpm_and_a_subscriptions_rpm_are_held(litemaas_url, conn, redis_url, fake_upstream,
                                                                     http):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"])
    fake_upstream.virtual_keys.add(key.key)
    await set_key_limits(conn, key, model_rpm_limit={"gpt-4o-mini": 2})
    await conn.execute("UPDATE subscriptions SET rpm_limit = 1 WHERE model_id = 'gpt-4o' AND user_id = $1",
                       key.user_id)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        mini = [await post(http, gw.url, key.key) for _ in range(3)]
        full = [await post(http, gw.url, key.key, chat("gpt-4o")) for _ in range(2)]
    assert [status for status, _, _ in mini] == [200, 200, 429]
    assert mini[2][2] == rate_limited("the requests per minute of this API key for this model (2) is reached")
    assert [status for status, _, _ in full] == [200, 429]
    assert full[1][2] == rate_limited("the requests per minute of your subscription to this model (1) is reached")
    assert 1 <= int(full[1][1]["Retry-After"]) <= 60


async def test_a_keys_budget_and_its_budget_for_one_model_are_held_per_their_periods(litemaas_url, conn, redis_url,
                                                                                     fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"])
    fake_upstream.virtual_keys.add(key.key)
    await conn.execute("UPDATE models SET input_cost_per_token = 0.5, output_cost_per_token = 1.0")  # 9.5 an answer
    await set_key_limits(conn, key, max_budget=15, model_max_budget={"gpt-4o": {"budgetLimit": 5, "timePeriod": "1d"}})
    await conn.execute("UPDATE users SET max_budget = NULL WHERE id = $1", key.user_id)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        await gw.state.limiter.load_prices(gw.state.pool)
        assert (await post(http, gw.url, key.key, chat("gpt-4o")))[0] == 200  # nothing spent yet
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        refused_model = await post(http, gw.url, key.key, chat("gpt-4o"))
        assert (await post(http, gw.url, key.key))[0] == 200  # gpt-4o-mini: 9.5 of the key's 15 spent
        await asyncio.wait_for(gw.state.limiter.settle(), 5)
        refused_key = await post(http, gw.url, key.key)
    now = datetime.now(timezone.utc)
    tomorrow = (now.date() + timedelta(days=1)).strftime("%Y-%m-%d 00:00 UTC")
    next_month = datetime.fromtimestamp(period(now.timestamp(), None)[1], timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    assert (refused_model[0], refused_model[2]) == (429, quota_exceeded(
        f"the budget of this API key for this model ($5) is used up; it resets at {tomorrow}"))
    assert (refused_key[0], refused_key[2]) == (429, quota_exceeded(
        f"the budget of this API key ($15) is used up; it resets at {next_month}"))
