"""The `maas-gateway` admin subcommands, run as a user runs them (a subprocess), against
the same Postgres and the LiteLLM double."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import orjson
import pytest

from tests.admin_support import unique_email
from tests.support import MASTER_KEY

pytestmark = pytest.mark.integration


async def cli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def env(pool, postgres_url, redis_url, double) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "GATEWAY_", "DATABASE_", "REDIS_"))}
    return {**environ, "DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": double.url,
            "LITELLM_API_KEY": MASTER_KEY}


async def test_users_models_subscriptions_and_keys_from_the_command_line(env, double, pool):
    email = unique_email("cli")
    code, out, err = await cli(env, "users", "create", "--email", email, "--username", "cli user", "--json")
    assert (code, err) == (0, "")
    user = orjson.loads(out)
    assert (user["email"], user["username"], user["sync_status"]) == (email, "cli user", "synced")
    assert user["id"] in double.users

    models = [f"cli-a-{uuid.uuid4().hex[:6]}", f"cli-b-{uuid.uuid4().hex[:6]}"]
    for model in models:
        code, out, _ = await cli(env, "models", "add", model)
        assert code == 0 and out.splitlines()[0].split() == ["id", model]
    code, out, _ = await cli(env, "subscriptions", "create", "--user", user["id"], "--model", models[0], "--json")
    assert code == 0 and orjson.loads(out)["subscription"]["status"] == "active"

    code, out, err = await cli(env, "keys", "create", "--user", user["id"], "--models", ",".join(models), "--json")
    assert code == 1 and out == ""
    assert orjson.loads(err) == {"error": {
        "message": f"No active subscription for: {models[1]}. Subscribe the user to these models first.",
        "type": "conflict_error", "param": "models", "code": "SUBSCRIPTION_REQUIRED"}}

    await cli(env, "subscriptions", "create", "--user", user["id"], "--model", models[1])
    code, out, _ = await cli(env, "keys", "create", "--user", user["id"], "--models", ",".join(models), "--json")
    assert code == 0
    key = orjson.loads(out)
    assert key["key"].startswith("sk-") and key["models"] == sorted(models)
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE id = $1", key["id"]) == 1

    code, table, _ = await cli(env, "keys", "list", "--user", user["id"])
    assert code == 0
    header, row = table.splitlines()
    assert header.split() == ["id", "user_id", "name", "key_prefix", "models", "status", "expires_at", "created_at"]
    assert row.split()[:6] == [key["id"], user["id"], "-", key["key_prefix"], ",".join(sorted(models)), "active"]
    assert key["key"] not in table

    code, out, err = await cli(env, "keys", "revoke", key["id"], "--json")  # publishes on Redis too
    assert (code, err) == (0, "") and orjson.loads(out)["status"] == "revoked"
    code, out, _ = await cli(env, "keys", "list", "--user", user["id"], "--json")
    assert [k["status"] for k in orjson.loads(out)] == ["revoked"] and key["key"] not in out

    code, out, err = await cli(env, "users", "get", "nobody")
    assert (code, out, err) == (1, "", "maas-gateway: NOT_FOUND: No user with id 'nobody'.\n")


async def test_sync_forces_a_pass_over_users_litellm_lacks(env, double, pool):
    user_id = "cli-sync-" + uuid.uuid4().hex[:8]
    await pool.execute(
        """INSERT INTO users (id, username, email, sync_status, sync_error, sync_attempts, next_sync_at)
           VALUES ($1, $1, $2, 'error', 'earlier failure', 3, now() + interval '1 day')""",
        user_id, unique_email("sync"),
    )
    code, out, err = await cli(env, "sync", "--json")
    assert (code, err) == (0, "")
    result = orjson.loads(out)
    assert result["enabled"] is True and result["synced"] >= 1 and result["failed"] == []
    assert await pool.fetchval("SELECT sync_status FROM users WHERE id = $1", user_id) == "synced"
    assert user_id in double.users


async def test_sync_with_sync_switched_off_says_so(env):
    code, out, err = await cli({**env, "LITELLM_SYNC_USERS": "false"}, "sync")
    assert (code, out) == (2, "")
    assert err == ("maas-gateway: configuration error: user sync is off (litellm.sync_users: false / "
                   "LITELLM_SYNC_USERS=false): nothing to do\n")
