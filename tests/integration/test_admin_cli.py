"""The `maas-gateway` admin subcommands, run as a user runs them (a subprocess), against
the same Postgres and the LiteLLM double."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import orjson
import pytest

from tests.admin_support import row_counts, unique_email
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


async def test_a_bad_value_gets_the_admin_apis_answer_and_changes_nothing(env, pool):
    counts = await row_counts(pool)
    code, out, err = await cli(env, "keys", "create", "--user", "u", "--models", "m", "--rpm-limit", "-1", "--json")
    assert (code, out) == (1, "")
    assert orjson.loads(err) == {"error": {"message": "rpm_limit: expected a non-negative integer, got -1.",
                                           "type": "invalid_request_error", "param": "rpm_limit", "code": "INVALID_REQUEST"}}
    code, out, err = await cli(env, "keys", "create", "--user", "u", "--models", "m", "--expires-at", "tomorrow")
    assert (code, out, err) == (1, "", "maas-gateway: INVALID_REQUEST: expires_at: 'tomorrow' is not an ISO 8601 date-time.\n")
    code, out, err = await cli(env, "keys", "create", "--user", "u", "--models", " , ")
    assert (code, out, err) == (1, "", "maas-gateway: INVALID_REQUEST: models: expected a non-empty list of non-empty "
                                       "strings, got a list.\n")
    assert await row_counts(pool) == counts


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("keys", "set-limits", "k1"), "Error: name at least one of: --rpm-limit, --tpm-limit, --max-parallel-requests"),
        (("keys", "set-limits", "k1", "--rpm-limit", "many"), "Error: Invalid value for '--rpm-limit': 'many' is not "
                                                              "a valid integer."),
        (("subscriptions", "set-status", "s1", "paused"), "Error: Invalid value for '{active|cancelled|denied|expired|"
                                                          "inactive|pending|suspended}': 'paused' is not one of"),
        (("migrate", "--litemaas-triggers", "--remove-litemaas-triggers"),
         "Error: --litemaas-triggers and --remove-litemaas-triggers exclude each other"),
        (("keys", "rotate"), "Error: No such command 'rotate'."),
    ],
)
async def test_a_wrong_command_line_is_a_usage_error_with_exit_status_2(env, argv, message):
    code, out, err = await cli(env, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("Usage: maas-gateway ") and message in err, err


async def test_activate_deactivate_set_status_and_list_from_the_command_line(env, pool):
    code, out, _ = await cli(env, "users", "create", "--email", unique_email("cli-state"), "--json")
    user = orjson.loads(out)
    model = "cli-state-" + uuid.uuid4().hex[:6]
    await cli(env, "models", "add", model)
    code, out, _ = await cli(env, "subscriptions", "create", "--user", user["id"], "--model", model, "--json")
    subscription = orjson.loads(out)["subscription"]
    code, out, err = await cli(env, "users", "deactivate", user["id"], "--json")
    assert (code, err, orjson.loads(out)["is_active"]) == (0, "", False)
    code, out, _ = await cli(env, "users", "activate", user["id"])
    assert code == 0 and out.splitlines()[3].split() == ["is_active", "yes"]
    code, out, err = await cli(env, "subscriptions", "set-status", subscription["id"], "suspended", "--json")
    assert (code, err, orjson.loads(out)["status"]) == (0, "", "suspended")
    assert await pool.fetchval("SELECT status FROM subscriptions WHERE id = $1", subscription["id"]) == "suspended"
    code, out, _ = await cli(env, "models", "list")
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == ["id", "is_active", "created_at"]
    assert [model, "yes"] in [row.split()[:2] for row in rows]
