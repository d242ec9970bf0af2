"""Usage records on real Postgres: every served request of three instances is in usage_daily once they
have shut down (the last flush is the lifespan's), with the tokens the upstream reported, the
subscription's used_* and the key's last_used_at; the admin API and the CLI list them, paged."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone

import aiohttp
import orjson
import pytest

from tests.admin_support import admin_gateway, call
from tests.integration.test_admin_cli import cli, env  # noqa: F401 - the CLI runner and its fixture
from tests.support import bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration


async def chat(http: aiohttp.ClientSession, url: str, key: str, model: str, **extra) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    async with http.post(url + "/v1/chat/completions", json=body, headers=bearer(key)) as r:
        await r.read()
        return r.status


async def test_usage_rows_are_complete_after_three_instances_shut_down(pool, postgres_url, redis_url, fake_upstream):
    first = await seed_key(pool, models=["gpt-4o-mini", "gpt-4o"])
    second = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(postgres_url, redis_url, fake_upstream.url, usage={"flush_seconds": 3600})  # only the last
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
        gws = [await stack.enter_async_context(running_gateway(config)) for _ in range(3)]
        calls = [chat(http, gws[i % 3].url, first.key, "gpt-4o-mini") for i in range(9)]  # 5 + 7 tokens each
        calls += [chat(http, gws[i % 3].url, first.key, "gpt-4o-mini", stream=True) for i in range(3)]  # 4 + 5 each
        calls += [chat(http, gws[i % 3].url, first.key, "gpt-4o") for i in range(2)]
        calls += [chat(http, gws[i % 3].url, second.key, "gpt-4o-mini") for i in range(4)]
        statuses = await asyncio.gather(*calls)
        assert set(statuses) == {200}
        assert await pool.fetchval("SELECT count(*) FROM usage_daily WHERE user_id = ANY($1)",
                                   [first.user_id, second.user_id]) == 0  # nothing flushed while serving
    rows = await pool.fetch("SELECT key_id, user_id, model_id, day, requests, prompt_tokens, completion_tokens, spend "
                            "FROM usage_daily WHERE user_id = ANY($1) ORDER BY user_id = $2 DESC, model_id",
                            [first.user_id, second.user_id], first.user_id)
    today = datetime.now(timezone.utc).date()
    assert [tuple(r) for r in rows] == [
        (first.key_id, first.user_id, "gpt-4o", today, 2, 10, 14, 0),
        (first.key_id, first.user_id, "gpt-4o-mini", today, 12, 9 * 5 + 3 * 4, 9 * 7 + 3 * 5, 0),
        (second.key_id, second.user_id, "gpt-4o-mini", today, 4, 20, 28, 0),
    ]
    used = await pool.fetch("SELECT model_id, used_requests, used_tokens FROM subscriptions WHERE user_id = $1 "
                            "ORDER BY model_id", first.user_id)
    assert [tuple(r) for r in used] == [("gpt-4o", 2, 24), ("gpt-4o-mini", 12, 9 * 12 + 3 * 9)]
    assert await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", second.key_id) is not None


async def test_usage_is_listed_by_the_admin_api_filtered_and_paged(pool, postgres_url, redis_url, fake_upstream, admin):
    seeded = await seed_key(pool, models=["gpt-4o-mini", "gpt-4o"])
    async with admin_gateway(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False}) as gw:
        async with aiohttp.ClientSession() as http:
            for model in ("gpt-4o-mini", "gpt-4o", "gpt-4o"):
                assert await chat(http, gw.url, seeded.key, model) == 200
        await gw.state.usage.flush()
        base = f"{gw.url}/admin/v1/usage?user_id={seeded.user_id}"
        status, page = await call(admin, "GET", base + "&limit=1")
        today = datetime.now(timezone.utc).date().isoformat()
        row = {"day": today, "key_id": seeded.key_id, "user_id": seeded.user_id, "model_id": "gpt-4o", "requests": 2,
               "prompt_tokens": 10, "completion_tokens": 14, "spend": 0.0}
        assert (status, page["data"]) == (200, [row])
        status, rest = await call(admin, "GET", base + "&limit=1&cursor=" + page["next_cursor"])
        assert (status, rest) == (200, {"data": [{**row, "model_id": "gpt-4o-mini", "requests": 1, "prompt_tokens": 5,
                                                  "completion_tokens": 7}], "next_cursor": None})
        status, only = await call(admin, "GET", f"{base}&model=gpt-4o-mini&from={today}&to={today}")
        assert (status, [r["model_id"] for r in only["data"]], only["next_cursor"]) == (200, ["gpt-4o-mini"], None)
        status, none = await call(admin, "GET", f"{base}&to=2000-01-01")
        assert (status, none) == (200, {"data": [], "next_cursor": None})
        status, body = await call(admin, "GET", f"{base}&from=yesterday")
        assert (status, body["error"]["message"], body["error"]["param"]) == (
            422, "from: expected a UTC day as YYYY-MM-DD, got 'yesterday'.", "from")


async def test_usage_from_the_command_line(env, pool):  # noqa: F811 - the fixture
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    await pool.execute("INSERT INTO usage_daily VALUES ('2026-01-02', $1, $2, 'gpt-4o-mini', 3, 30, 40, 0.5)",
                       seeded.key_id, seeded.user_id)
    code, out, err = await cli(env, "usage", "--user", seeded.user_id, "--json")
    assert (code, err) == (0, "")
    assert orjson.loads(out) == {"data": [{"day": "2026-01-02", "key_id": seeded.key_id, "user_id": seeded.user_id,
                                           "model_id": "gpt-4o-mini", "requests": 3, "prompt_tokens": 30,
                                           "completion_tokens": 40, "spend": 0.5}], "next_cursor": None}
    code, out, _ = await cli(env, "usage", "--user", seeded.user_id)
    assert code == 0 and out.splitlines()[0].split() == ["day", "user_id", "key_id", "model_id", "requests",
                                                         "prompt_tokens", "completion_tokens", "spend"]
