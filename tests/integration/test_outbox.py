"""Kill tests of the LiteLLM outbox (passthrough mode): LiteLLM stopped in the middle of a
user or key flow, the gateway stopped between the commit and the LiteLLM call. After the
restart, the database and LiteLLM (the double) agree and nothing is orphaned."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from gateway.accounts.service import Accounts
from gateway.store.keys import hash_key
from gateway.accounts.litellm import LiteLLMManagement
from tests.admin_support import admin_config, admin_gateway, call, unique_email
from tests.support import eventually

pytestmark = pytest.mark.integration

PASSTHROUGH = {"auth": "passthrough"}


@contextlib.asynccontextmanager
async def accounts_process(pool, postgres_url: str, redis_url: str, double_url: str) -> AsyncIterator[Accounts]:
    """What a gateway process runs for the admin API, in this test's process: cancelling its
    call is the process dying there (nothing after the cancelled await runs)."""
    config = admin_config(postgres_url, redis_url, double_url, litellm=PASSTHROUGH)
    async with LiteLLMManagement(config) as management:
        yield Accounts(pool, config, management, None)


async def user_with_model(accounts: Accounts, tag: str) -> tuple[str, str]:
    user = await accounts.create_user(email=unique_email(tag))
    model = (await accounts.create_model(id=f"{tag}-{user['id'][:8]}"))["id"]
    await accounts.create_subscription(user_id=user["id"], model_id=model)
    assert user["sync_status"] == "synced"
    return user["id"], model


async def both_sides(pool, double, user_id: str) -> dict[str, Any]:
    """The user's keys as the database and LiteLLM hold them, and the intents not done."""
    rows = await pool.fetch(
        "SELECT key_hash, revoked_at IS NULL AS live, sync_status FROM api_keys WHERE user_id = $1", user_id
    )
    hashes = [r["key_hash"] for r in rows]
    return {
        "live_rows": sorted(r["key_hash"] for r in rows if r["live"]),
        "litellm": sorted(t for t, k in double.keys.items() if k["user_id"] == user_id),
        "pending": await pool.fetchval(
            "SELECT count(*) FROM litellm_outbox WHERE key_hash = ANY($1::text[]) AND status = 'pending'", hashes
        ) if hashes else 0,
        "sync": sorted({r["sync_status"] for r in rows}),
    }


async def agreed(pool, double, user_id: str, live: list[str]) -> bool:
    state = await both_sides(pool, double, user_id)
    return state["live_rows"] == state["litellm"] == sorted(live) and state["pending"] == 0


async def test_gateway_killed_after_committing_a_key_before_litellm_answered(pool, postgres_url, redis_url, double):
    async with accounts_process(pool, postgres_url, redis_url, double.url) as accounts:
        user_id, model = await user_with_model(accounts, "killgen")
        double.stall_after = 30  # LiteLLM makes the key, then the process dies before the answer
        flow = asyncio.create_task(accounts.create_key(user_id=user_id, models=[model]))
        await eventually(lambda: any(k["user_id"] == user_id for k in double.keys.values()), timeout=5)
        flow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flow
    double.stall_after = 0
    [row] = await pool.fetch("SELECT key_hash, sync_status FROM api_keys WHERE user_id = $1", user_id)
    assert row["sync_status"] == "pending"  # committed with its intent; LiteLLM holds it too
    assert [t for t, k in double.keys.items() if k["user_id"] == user_id] == [row["key_hash"]]

    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH):  # the restart
        # The key was never handed out (its plaintext died with the process): deleted on both sides.
        await eventually(lambda: agreed(pool, double, user_id, []), timeout=15)
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE user_id = $1", user_id) == 0
    assert await pool.fetchval(
        "SELECT kind FROM litellm_outbox WHERE key_hash = $1 AND status = 'done'", row["key_hash"]
    ) == "delete_key"


async def test_gateway_killed_after_committing_a_key_before_calling_litellm(pool, postgres_url, redis_url, double):
    async with accounts_process(pool, postgres_url, redis_url, double.url) as accounts:
        user_id, model = await user_with_model(accounts, "killpre")
        double.slow = 30  # the call never reaches LiteLLM's handler before the process dies
        flow = asyncio.create_task(accounts.create_key(user_id=user_id, models=[model]))
        await eventually(lambda: any(c.path == "/key/generate" for c in double.calls_for(user_id)), timeout=5)
        flow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flow
    double.slow = 0
    assert await pool.fetchval("SELECT sync_status FROM api_keys WHERE user_id = $1", user_id) == "pending"
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH):
        await eventually(lambda: agreed(pool, double, user_id, []), timeout=15)
    assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE user_id = $1", user_id) == 0


async def test_litellm_stopped_mid_key_generation_leaves_nothing_on_either_side(
    pool, postgres_url, redis_url, double, admin
):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH) as gw:
        _, user = await call(admin, "POST", gw.url + "/admin/v1/users", json={"email": unique_email("midgen")})
        model = f"midgen-{user['id'][:8]}"
        await call(admin, "POST", gw.url + "/admin/v1/models", json={"id": model})
        double.lose_answers = True  # LiteLLM makes the key and stops before answering
        status, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions",
                                    json={"user_id": user["id"], "model_id": model, "generate_api_key": True})
        assert (status, answer["error"]["code"], answer["error"]["type"]) == (
            503, "LITELLM_UNAVAILABLE", "service_unavailable_error")
        assert answer["error"]["message"] == (
            "Service temporarily unavailable. Please try again later. (LiteLLM /key/generate unreachable)")
        # Nothing committed stays: no subscription, no key row; LiteLLM's copy goes once it answers.
        assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE user_id = $1", user["id"]) == 0
        assert await pool.fetchval("SELECT count(*) FROM api_keys WHERE user_id = $1", user["id"]) == 0
        double.lose_answers = False
        await eventually(lambda: agreed(pool, double, user["id"], []), timeout=15)


async def test_litellm_stopped_mid_revocation_then_gateway_restarted(pool, postgres_url, redis_url, double, admin):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH) as gw:
        _, user = await call(admin, "POST", gw.url + "/admin/v1/users", json={"email": unique_email("midrev")})
        model = f"midrev-{user['id'][:8]}"
        await call(admin, "POST", gw.url + "/admin/v1/models", json={"id": model})
        await call(admin, "POST", gw.url + "/admin/v1/subscriptions", json={"user_id": user["id"], "model_id": model})
        keys = [(await call(admin, "POST", gw.url + "/admin/v1/keys", json={"user_id": user["id"], "models": [model]}))[1]
                for _ in range(2)]
        kept, revoked = hash_key(keys[0]["key"]), hash_key(keys[1]["key"])
        assert await agreed(pool, double, user["id"], [kept, revoked])
        await double.set_down(True)  # stopped: the revocation commits, its LiteLLM call fails
        status, answer = await call(admin, "DELETE", gw.url + f"/admin/v1/keys/{keys[1]['id']}")
        assert (status, answer["status"], answer["sync_status"]) == (200, "revoked", "error")
    # The gateway stopped while the intent was still to do; LiteLLM comes back, a new one starts.
    await double.set_down(False)
    assert revoked in double.keys
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH):
        await eventually(lambda: agreed(pool, double, user["id"], [kept]), timeout=15)
    assert (await both_sides(pool, double, user["id"]))["sync"] == ["synced"]


async def test_litellm_stopped_mid_user_creation_is_healed_and_keys_wait_for_it(
    pool, postgres_url, redis_url, double, admin
):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH) as gw:
        double.lose_answers = True  # LiteLLM creates the user, the answer is lost
        status, user = await call(admin, "POST", gw.url + "/admin/v1/users", json={"email": unique_email("miduser")})
        assert (status, user["sync_status"]) == (201, "error")
        model = f"miduser-{user['id'][:8]}"
        await call(admin, "POST", gw.url + "/admin/v1/models", json={"id": model})
        status, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions",
                                    json={"user_id": user["id"], "model_id": model, "generate_api_key": True})
        assert (status, answer["error"]["code"], answer["error"]["message"]) == (
            503, "USER_NOT_FOUND_LITELLM", "Account setup in progress. Please try again in a moment.")
        assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE user_id = $1", user["id"]) == 0
        double.lose_answers = False
        await eventually(lambda: pool.fetchval("SELECT sync_status = 'synced' FROM users WHERE id = $1", user["id"]),
                         timeout=15)
        assert user["id"] in double.users
        status, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions",
                                    json={"user_id": user["id"], "model_id": model, "generate_api_key": True})
        assert status == 201
        await eventually(lambda: agreed(pool, double, user["id"], [hash_key(answer["api_key"]["key"])]), timeout=15)


async def test_reconciler_deletes_litellm_keys_with_the_gateway_alias_and_no_row(pool, postgres_url, redis_url, double):
    orphan = double._mint({"user_id": "someone", "models": [], "key_alias": "maas-gateway/no-such-row"})["token_id"]
    foreign = double._mint({"user_id": "someone", "models": [], "key_alias": "made-by-hand"})["token_id"]
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH) as gw:
        await eventually(lambda: orphan not in double.keys, timeout=15)
        await eventually(lambda: gw.state.account_services.reconciler.passes >= 2, timeout=15)
    assert foreign in double.keys  # not ours: left alone


async def test_management_flows_use_their_own_small_pool(pool, postgres_url, redis_url, double):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH) as gw:
        accounts = gw.state.account_services.accounts
        assert accounts.outbox._pool is not gw.state.pool  # a slow flow cannot take the key lookups' connections
        assert (accounts.outbox._pool.get_max_size(), gw.state.pool.get_max_size()) == (3, 10)


async def test_a_deactivation_made_while_litellm_is_down_reaches_it_when_it_is_back(
    pool, postgres_url, redis_url, double, admin
):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm=PASSTHROUGH) as gw:
        _, user = await call(admin, "POST", gw.url + "/admin/v1/users", json={"email": unique_email("deact")})
        model = f"deact-{user['id'][:8]}"
        await call(admin, "POST", gw.url + "/admin/v1/models", json={"id": model})
        _, answer = await call(admin, "POST", gw.url + "/admin/v1/subscriptions",
                               json={"user_id": user["id"], "model_id": model, "generate_api_key": True})
        token = hash_key(answer["api_key"]["key"])
        assert double.keys[token]["blocked"] is None
        await double.set_down(True)
        status, changed = await call(admin, "PATCH", gw.url + f"/admin/v1/users/{user['id']}", json={"is_active": False})
        assert (status, changed["is_active"]) == (200, False)  # committed whatever LiteLLM does
        assert await pool.fetchval("SELECT sync_status FROM api_keys WHERE key_hash = $1", token) == "error"
        await double.set_down(False)
        await eventually(lambda: double.keys[token]["blocked"] is True, timeout=15)
        await eventually(lambda: agreed(pool, double, user["id"], [token]), timeout=15)
        assert (await both_sides(pool, double, user["id"]))["sync"] == ["synced"]


async def test_a_key_made_while_the_sweep_runs_is_not_taken_for_an_orphan(pool, postgres_url, redis_url, double):
    """A flow commits its row, then LiteLLM makes the key: a sweep that read the rows before
    LiteLLM's list would see the new key without its row and delete a live key (seen once in ten
    suite runs). The sweep lists LiteLLM first; here a key is made just before that list."""
    async with accounts_process(pool, postgres_url, redis_url, double.url) as accounts:
        user_id, model = await user_with_model(accounts, "sweeprace")
        made: list[str] = []
        management = accounts.mirror._management
        listing = management.list_key_hashes

        async def list_after_a_flow(prefix: str) -> list[str]:
            if not made:  # the flow completes between the sweep's two reads
                made.append(hash_key((await accounts.create_key(user_id=user_id, models=[model]))["key"]))
            return await listing(prefix)

        management.list_key_hashes = list_after_a_flow
        assert await accounts.outbox.sweep() == 0
        assert await agreed(pool, double, user_id, made)
