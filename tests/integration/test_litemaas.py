"""LiteMaaS mode: the gateway on a database built from LiteMaaS's own DDL, with rows written the
way LiteMaaS writes them (tests/litemaas_support.py), in passthrough mode with LiteMaaS's LiteLLM keys."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import sys

import aiohttp
import asyncpg
import pytest

from gateway.store import litemaas as litemaas_mode
from gateway.config import AdminConfig, ConfigError, DatabaseConfig
from gateway.dev.litemaas import seed_litemaas_demo
from gateway.dev.services import free_port
from tests import litemaas_support as litemaas
from tests.support import MASTER_KEY, bearer, eventually, make_config, running_gateway

pytestmark = pytest.mark.integration

CONTRACT_SECONDS = 1.0  # design: a change is honoured on every instance within a second
LITEMAAS = DatabaseConfig(schema="litemaas")
ADMIN_TOKEN = "admin-token-litemaas"


def refused(code: str, message: str, param: str | None = "model", type_: str = "permission_denied_error") -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def denied(model: str) -> dict:
    return refused("MODEL_ACCESS_DENIED",
                   f"Your API key does not have access to this model. Please check your subscription. (model: {model})")


def inactive(model: str) -> dict:
    return refused("SUBSCRIPTION_INACTIVE",
                   f"Your subscription to this model is not active. Please check your subscription. (model: {model})")


REVOKED = refused("API_KEY_REVOKED", "This API key has been revoked. Create a new key to continue.", param=None,
                  type_="authentication_error")


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def litemaas_config(url: str, redis_url: str, upstream_url: str):
    return make_config(url, redis_url, upstream_url, database={"schema": "litemaas"}, litellm={"auth": "passthrough"})


async def install_triggers(url: str) -> None:
    """`maas-gateway migrate --litemaas-triggers`, in process."""
    await litemaas_mode.prepare_database(url, LITEMAAS, apply=True, triggers=True)


@contextlib.asynccontextmanager
async def gateways(url: str, redis_url: str, upstream_url: str, count: int = 1):
    config = litemaas_config(url, redis_url, upstream_url)
    async with contextlib.AsyncExitStack() as stack:
        started = [await stack.enter_async_context(running_gateway(config)) for _ in range(count)]
        for gw in started:
            await asyncio.wait_for(gw.state.invalidator.postgres_listening.wait(), 10)
        yield started


async def answer(http, url: str, key: str, model: str = "gpt-4o-mini") -> tuple[int, dict | None]:
    async with http.post(url + "/v1/chat/completions", json=chat(model), headers=bearer(key)) as r:
        body = await r.json()
        return r.status, (None if r.status == 200 else body)


async def a_user_with_key(conn, models: list[str], *, subscribed: list[str] | None = None, restricted=()) -> litemaas.LiteMaaSKey:
    for model in {*models, *(subscribed or [])}:
        await litemaas.add_model(conn, model, restricted=model in restricted)
    user_id = await litemaas.add_user(conn)
    for model in subscribed if subscribed is not None else models:
        await litemaas.subscribe(conn, user_id, model)
    return await litemaas.add_key(conn, user_id, models)


async def test_an_allowed_model_is_served_and_the_litellm_key_forwarded_as_is(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)  # LiteLLM knows the key LiteMaaS made
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        assert await answer(http, gw.url, key.key) == (200, None)
    [seen] = fake_upstream.seen
    assert seen.headers["Authorization"] == f"Bearer {key.key}"
    assert gw.state.config.litellm.sync_users is False


async def test_a_suspended_subscription_is_403_subscription_inactive(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    await conn.execute("UPDATE subscriptions SET status = 'suspended' WHERE user_id = $1", key.user_id)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        assert await answer(http, gw.url, key.key) == (403, inactive("gpt-4o-mini"))
    assert fake_upstream.seen == []


async def test_a_subscription_past_its_expires_at_is_403(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    await conn.execute("UPDATE subscriptions SET expires_at = now() - interval '1 minute' WHERE user_id = $1", key.user_id)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        assert await answer(http, gw.url, key.key) == (403, inactive("gpt-4o-mini"))


async def test_a_model_not_on_the_key_is_403_even_with_a_subscription(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"], subscribed=["gpt-4o-mini", "gpt-4o"])
    fake_upstream.virtual_keys.add(key.key)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        assert await answer(http, gw.url, key.key, "gpt-4o") == (403, denied("gpt-4o"))
        assert await answer(http, gw.url, key.key, "gpt-4o-mini") == (200, None)
    assert [s.path for s in fake_upstream.seen] == ["/v1/chat/completions"]


async def test_a_restricted_model_is_refused_until_its_subscription_is_approved(
    litemaas_url, conn, redis_url, fake_upstream, http
):
    await install_triggers(litemaas_url)
    key = await a_user_with_key(conn, ["gpt-4o"], restricted={"gpt-4o"})
    fake_upstream.virtual_keys.add(key.key)
    assert await conn.fetchval("SELECT status FROM subscriptions WHERE user_id = $1", key.user_id) == "pending"
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        assert await answer(http, gw.url, key.key, "gpt-4o") == (403, inactive("gpt-4o"))
        await conn.execute(  # an admin approves it in LiteMaaS
            """UPDATE subscriptions SET status = 'active', status_reason = 'ok', status_changed_at = now(),
                      status_changed_by = '00000000-0000-0000-0000-000000000001' WHERE user_id = $1""",
            key.user_id,
        )

        async def served() -> bool:
            return await answer(http, gw.url, key.key, "gpt-4o") == (200, None)

        await eventually(served, timeout=CONTRACT_SECONDS)


async def test_models_list_shows_only_what_the_key_may_use(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini", "gpt-4o"], restricted={"gpt-4o"})  # gpt-4o: pending
    fake_upstream.virtual_keys.add(key.key)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        async with http.get(gw.url + "/v1/models", headers=bearer(key.key)) as r:
            assert r.status == 200
            assert [m["id"] for m in (await r.json())["data"]] == ["gpt-4o-mini"]
        async with http.get(gw.url + "/v1/models/gpt-4o", headers=bearer(key.key)) as r:
            assert (r.status, await r.json()) == (404, {"error": {
                "message": "The model does not exist or your API key does not have access to it. (model: gpt-4o)",
                "type": "not_found_error", "param": "model", "code": "MODEL_NOT_FOUND"}})


async def test_a_legacy_key_bound_by_subscription_id_serves_that_model_only(litemaas_url, conn, redis_url, fake_upstream, http):
    await litemaas.add_model(conn, "gpt-4o-mini")
    await litemaas.add_model(conn, "gpt-4o")
    user_id = await litemaas.add_user(conn)
    subscription = await litemaas.subscribe(conn, user_id, "gpt-4o-mini")
    await litemaas.subscribe(conn, user_id, "gpt-4o")
    key = await litemaas.add_key(conn, user_id, [], legacy_subscription=subscription)  # no api_key_models rows
    fake_upstream.virtual_keys.add(key.key)
    async with gateways(litemaas_url, redis_url, fake_upstream.url) as [gw]:
        assert await answer(http, gw.url, key.key, "gpt-4o-mini") == (200, None)
        assert await answer(http, gw.url, key.key, "gpt-4o") == (403, denied("gpt-4o"))


async def test_a_revocation_written_by_sql_is_refused_within_1s_on_every_instance(
    litemaas_url, conn, redis_url, fake_upstream, http
):
    await install_triggers(litemaas_url)
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    async with gateways(litemaas_url, redis_url, fake_upstream.url, count=2) as instances:
        urls = [gw.url for gw in instances]
        for url in urls:  # both hold the record (L1 30 s, Redis 300 s): only invalidation can explain a change
            assert await answer(http, url, key.key) == (200, None)
        await litemaas.revoke(conn, key.id)

        async def refused_everywhere() -> bool:
            return all([await answer(http, url, key.key) == (401, REVOKED) for url in urls])

        await eventually(refused_everywhere, timeout=CONTRACT_SECONDS)


async def test_a_user_deactivated_in_litemaas_is_refused_within_1s(litemaas_url, conn, redis_url, fake_upstream, http):
    await install_triggers(litemaas_url)
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(key.key)
    async with gateways(litemaas_url, redis_url, fake_upstream.url, count=2) as instances:
        for gw in instances:
            assert await answer(http, gw.url, key.key) == (200, None)
        await conn.execute("UPDATE users SET is_active = false WHERE id = $1", key.user_id)

        async def refused_everywhere() -> bool:
            return all([await answer(http, gw.url, key.key) == (403, refused(
                "USER_INACTIVE", "Your account is deactivated. Contact your administrator.", param=None))
                for gw in instances])

        await eventually(refused_everywhere, timeout=CONTRACT_SECONDS)


async def test_litemaas_tables_keep_their_columns_and_rows_through_migrate_and_traffic(
    litemaas_url, conn, redis_url, fake_upstream, http
):
    key = await a_user_with_key(conn, ["gpt-4o-mini"], subscribed=["gpt-4o-mini", "gpt-4o"])
    other = await a_user_with_key(conn, ["llama-3-8b"], restricted={"llama-3-8b"})
    fake_upstream.virtual_keys.update({key.key, other.key})
    columns_before, rows_before = await litemaas.columns(conn), await litemaas.rows(conn)

    code, out, err = await run_cli("migrate", "--litemaas-triggers", url=litemaas_url)
    assert (code, out, err) == (0, "applied 2 migration(s): 003_litellm_outbox.sql, 006_usage_daily.sql\n"
                                   "NOTIFY triggers installed on LiteMaaS's tables\n", "")
    assert await litemaas.columns(conn) == columns_before
    assert await litemaas.rows(conn) == rows_before
    assert await gateway_tables(conn) == ["maas_gateway.gateway_migrations", "maas_gateway.litellm_outbox",
                                          "maas_gateway.usage_daily"]
    rows_before = await litemaas.rows(conn, usage_columns=False)

    async with gateways(litemaas_url, redis_url, fake_upstream.url, count=2) as instances:  # a day of traffic, in small
        for gw in instances:
            for _ in range(3):
                assert await answer(http, gw.url, key.key) == (200, None)
                assert await answer(http, gw.url, key.key, "gpt-4o") == (403, denied("gpt-4o"))
                assert await answer(http, gw.url, other.key, "llama-3-8b") == (403, inactive("llama-3-8b"))
                assert await answer(http, gw.url, "sk-unknown-key-0000") == (401, refused(
                    "INVALID_API_KEY", "Invalid API key. Check the key, or create a new one.", param=None, type_="authentication_error"))
            async with http.get(gw.url + "/v1/models", headers=bearer(key.key)) as r:
                assert r.status == 200
    assert await litemaas.columns(conn) == columns_before
    # the usage batches wrote LiteMaaS's usage columns (flushed as the gateways stopped), and nothing else
    assert await litemaas.rows(conn, usage_columns=False) == rows_before
    used = await conn.fetch("SELECT model_id, used_requests, used_tokens FROM subscriptions WHERE user_id = $1 "
                            "ORDER BY model_id", key.user_id)
    assert [tuple(r) for r in used] == [("gpt-4o", 0, 0), ("gpt-4o-mini", 6, 6 * 12)]  # 5 + 7 tokens an answer
    assert await conn.fetchval("SELECT last_used_at IS NOT NULL FROM api_keys WHERE id = $1", key.id)
    assert await conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", other.id) is None
    assert await conn.fetchval("SELECT sum(requests) FROM maas_gateway.usage_daily") == 6

    code, out, err = await run_cli("migrate", "--remove-litemaas-triggers", url=litemaas_url)
    assert (code, out, err) == (0, "schema is up to date\nNOTIFY triggers removed from LiteMaaS's tables\n", "")
    assert await conn.fetchval("SELECT count(*) FROM pg_trigger WHERE tgname = 'maas_gateway_notify'") == 0
    assert await conn.fetchval("SELECT to_regproc('maas_gateway.notify')") is None
    assert await litemaas.columns(conn) == columns_before


async def gateway_tables(conn) -> list[str]:
    rows = await conn.fetch(
        """SELECT table_schema || '.' || table_name AS name FROM information_schema.tables
           WHERE table_schema NOT IN ('public', 'pg_catalog', 'information_schema') ORDER BY 1"""
    )
    return [r["name"] for r in rows]


async def run_cli(*args: str, url: str, schema: str = "litemaas") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args,
        env={**os.environ, "DATABASE_URL": url, "GATEWAY_DATABASE_SCHEMA": schema, "LITELLM_API_KEY": MASTER_KEY},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()  # type: ignore[return-value]


async def test_the_wrong_database_for_the_schema_setting_stops_the_start(litemaas_url, pool, postgres_url):
    code, out, err = await run_cli("migrate", url=litemaas_url, schema="native")
    assert (code, out) == (2, "")
    assert err == ("maas-gateway: configuration error: database.schema: DATABASE_URL holds a LiteMaaS database "
                   "(UUID ids, api_keys.lite_llm_key_value); set database.schema: litemaas "
                   "(GATEWAY_DATABASE_SCHEMA=litemaas) to run on it unchanged\n")
    code, out, err = await run_cli("migrate", url=postgres_url, schema="litemaas")  # the native test database
    assert (code, out) == (2, "")
    assert err == ("maas-gateway: configuration error: database.schema: litemaas, but DATABASE_URL holds the gateway "
                   "native schema (expected LiteMaaS's users, models, subscriptions, api_keys, api_key_models with "
                   "UUID ids)\n")


async def test_a_litemaas_database_missing_a_column_the_gateway_reads_is_refused(litemaas_url, conn):
    await conn.execute("ALTER TABLE api_keys DROP COLUMN revoked_at")
    with pytest.raises(ConfigError) as caught:
        await litemaas_mode.prepare_database(litemaas_url, LITEMAAS, apply=True)
    assert str(caught.value) == ("database.schema: litemaas, but DATABASE_URL's tables are not LiteMaaS-shaped "
                                 "(missing: api_keys.revoked_at)")
    assert await gateway_tables(conn) == []  # nothing was created


async def test_a_gateway_on_the_wrong_database_does_not_start(litemaas_url, conn):
    columns_before = await litemaas.columns(conn)
    code, out, err = await run_cli("serve", "--port", str(free_port()), url=litemaas_url, schema="native")
    assert code == 3  # uvicorn's startup failure
    [line] = [json.loads(line) for line in err.splitlines() if '"maas_gateway.app"' in line]
    assert (line["level"], line["msg"]) == ("error", (
        "cannot start: database.schema: DATABASE_URL holds a LiteMaaS database (UUID ids, api_keys.lite_llm_key_value); "
        "set database.schema: litemaas (GATEWAY_DATABASE_SCHEMA=litemaas) to run on it unchanged"))
    assert await litemaas.columns(conn) == columns_before  # no native migration ran over LiteMaaS's tables
    assert await gateway_tables(conn) == []


async def test_the_admin_api_reads_litemaas_and_refuses_writes(litemaas_url, conn, redis_url, fake_upstream, http):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    config = make_config(litemaas_url, redis_url, fake_upstream.url, database={"schema": "litemaas"})
    async with running_gateway(dataclasses.replace(config, admin=AdminConfig(token=ADMIN_TOKEN))) as gw:
        auth = bearer(ADMIN_TOKEN)
        async with http.get(gw.url + f"/admin/v1/keys?user_id={key.user_id}", headers=auth) as r:
            assert r.status == 200
            [listed] = (await r.json())["data"]
        assert (listed["id"], listed["user_id"], listed["models"], listed["status"], listed["key_prefix"]) == (
            str(key.id), str(key.user_id), ["gpt-4o-mini"], "active", key.key[:7])
        async with http.get(gw.url + f"/admin/v1/users/{key.user_id}", headers=auth) as r:
            assert r.status == 200
            assert (await r.json())["id"] == str(key.user_id)
        async with http.get(gw.url + "/admin/v1/users/not-a-uuid", headers=auth) as r:
            assert (r.status, await r.json()) == (404, {"error": {
                "message": "Nothing has this id: it is not a valid id here.",
                "type": "not_found_error", "param": None, "code": "NOT_FOUND"}})
        async with http.post(gw.url + "/admin/v1/users", json={"email": "x@example.com"}, headers=auth) as r:
            assert (r.status, await r.json()) == (403, {"error": {
                "message": "This gateway runs on a LiteMaaS database (database.schema: litemaas): users, models, "
                           "subscriptions and keys are managed in LiteMaaS, and the admin API only reads them.",
                "type": "permission_denied_error", "param": None, "code": "MANAGED_BY_LITEMAAS"}})
        async with http.delete(gw.url + f"/admin/v1/keys/{key.id}", headers=auth) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "MANAGED_BY_LITEMAAS")
        async with http.get(gw.url + "/admin/v1/openapi.json", headers=auth) as r:
            paths = (await r.json())["paths"]
        assert [(path, method) for path, ops in sorted(paths.items()) for method, op in sorted(ops.items())
                if "403" in op["responses"]] == [
            ("/admin/v1/keys", "post"), ("/admin/v1/keys/{id}", "delete"), ("/admin/v1/keys/{id}", "patch"),
            ("/admin/v1/models", "post"),
            ("/admin/v1/subscriptions", "post"), ("/admin/v1/subscriptions/{id}", "patch"), ("/admin/v1/users", "post"),
            ("/admin/v1/users/{id}", "patch")]
    assert await conn.fetchval("SELECT is_active FROM api_keys WHERE id = $1", key.id) is True


async def test_make_run_litemaas_seeds_an_empty_database_the_litemaas_way(postgres_url, redis_url, fake_upstream, http):
    """`maas-gateway dev --litemaas` without the servers: its seeding, then a gateway on the result."""
    empty = litemaas.database_url(postgres_url, f"dev_litemaas_{secrets.token_hex(4)}")
    server = await asyncpg.connect(postgres_url)
    await server.execute(f'CREATE DATABASE "{empty.rsplit("/", 1)[1]}"')
    await server.close()
    try:
        first = await seed_litemaas_demo(empty, ("gpt-4o-mini", "gpt-4o"), ("gpt-4o-mini",))
        second = await seed_litemaas_demo(empty, ("gpt-4o-mini", "gpt-4o"), ("gpt-4o-mini",))  # a second run reuses it
        connection = await asyncpg.connect(empty)
        try:
            assert await connection.fetchval("SELECT count(*) FROM users WHERE oauth_provider = 'dev'") == 1
            assert await connection.fetchval("SELECT count(*) FROM api_keys") == 2
            assert await litemaas_mode.triggers_installed(connection)
        finally:
            await connection.close()
        config = make_config(empty, redis_url, fake_upstream.url, database={"schema": "litemaas"})
        async with running_gateway(config) as gw:
            for key in (first, second):
                assert await answer(http, gw.url, key) == (200, None)
                assert await answer(http, gw.url, key, "gpt-4o") == (403, denied("gpt-4o"))
    finally:
        await litemaas.drop_database(postgres_url, empty)


async def test_the_admin_cli_reads_litemaas_and_refuses_writes(litemaas_url, conn):
    key = await a_user_with_key(conn, ["gpt-4o-mini"])
    code, out, err = await run_cli("keys", "list", "--user", str(key.user_id), "--json", url=litemaas_url)
    assert (code, err) == (0, "")
    [listed] = json.loads(out)
    assert (listed["id"], listed["models"], listed["status"]) == (str(key.id), ["gpt-4o-mini"], "active")
    code, out, err = await run_cli("keys", "revoke", str(key.id), url=litemaas_url)
    assert (code, out) == (1, "")
    assert err == ("maas-gateway: MANAGED_BY_LITEMAAS: This gateway runs on a LiteMaaS database (database.schema: "
                   "litemaas): users, models, subscriptions and keys are managed in LiteMaaS, and the admin API only "
                   "reads them.\n")
    assert await conn.fetchval("SELECT is_active AND revoked_at IS NULL FROM api_keys WHERE id = $1", key.id) is True
