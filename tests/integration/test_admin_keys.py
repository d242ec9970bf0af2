"""Subscriptions and keys through the admin API: one transaction, no race, the proxy
honouring them at once on every instance, and LiteLLM's virtual keys in passthrough mode."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from prometheus_client import REGISTRY

from gateway.store.keys import hash_key
from tests.admin_support import (
    admin_gateway,
    call,
    row_counts,
    unique_email,
)
from tests.support import bearer, eventually

pytestmark = pytest.mark.integration


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def denied(code: str, message: str, param: str | None = "model", status_type: str = "permission_denied_error") -> dict:
    return {"error": {"message": message, "type": status_type, "param": param, "code": code}}


async def make_user_and_models(admin, url: str, *models: str) -> tuple[str, list[str]]:
    """A user and fresh models (names made unique per test)."""
    _, user = await call(admin, "POST", url + "/admin/v1/users", json={"email": unique_email()})
    suffix = uuid.uuid4().hex[:6]
    names = [f"{m}-{suffix}" for m in models]
    for name in names:
        status, _ = await call(admin, "POST", url + "/admin/v1/models", json={"id": name})
        assert status == 201
    return user["id"], names


async def subscribe(admin, url: str, user_id: str, model: str, **extra) -> dict:
    status, answer = await call(admin, "POST", url + "/admin/v1/subscriptions",
                                json={"user_id": user_id, "model_id": model, **extra})
    assert status == 201, answer
    return answer


@pytest.fixture
async def gateway(pool, postgres_url, redis_url, double):
    async with admin_gateway(postgres_url, redis_url, double.url) as gw:
        yield gw


@pytest.fixture
async def passthrough(pool, postgres_url, redis_url, double):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm={"auth": "passthrough"}) as gw:
        yield gw


@pytest.mark.parametrize("auth", ["service_key", "passthrough"])
async def test_fifty_concurrent_subscriptions_make_one_subscription_and_one_key(
    pool, postgres_url, redis_url, double, admin, auth
):
    async with admin_gateway(postgres_url, redis_url, double.url, litellm={"auth": auth}) as gw:
        user_id, (model,) = await make_user_and_models(admin, gw.url, "race")
        body = {"user_id": user_id, "model_id": model, "generate_api_key": True, "api_key_name": "race"}
        answers = await asyncio.gather(
            *(call(admin, "POST", gw.url + "/admin/v1/subscriptions", json=body) for _ in range(50))
        )
    created = [a for s, a in answers if s == 201]
    assert len(created) == 1
    assert sorted(s for s, _ in answers) == [200] * 49 + [201]
    subscription = created[0]["subscription"]
    assert set(created[0]) == {"subscription", "created", "api_key"}
    assert created[0]["api_key"]["models"] == [model]
    for status, answer in answers:
        if status == 200:
            assert answer == {"subscription": subscription, "created": False}
    assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE user_id = $1", user_id) == 1
    keys = await pool.fetch("SELECT id, key_hash FROM api_keys WHERE user_id = $1", user_id)
    assert [k["id"] for k in keys] == [created[0]["api_key"]["id"]]
    assert keys[0]["key_hash"] == hash_key(created[0]["api_key"]["key"])
    assert await pool.fetchval(
        "SELECT count(*) FROM api_key_models m JOIN api_keys k ON k.id = m.api_key_id WHERE k.user_id = $1", user_id
    ) == 1
    litellm_keys = [k for k in double.keys.values() if k["user_id"] == user_id]
    assert len(litellm_keys) == (1 if auth == "passthrough" else 0)  # no orphan in LiteLLM either


async def test_admin_key_works_for_its_models_only_and_revocation_reaches_a_second_instance_within_1s(
    pool, postgres_url, redis_url, double, admin
):
    async with admin_gateway(postgres_url, redis_url, double.url) as first, \
            admin_gateway(postgres_url, redis_url, double.url) as second, aiohttp.ClientSession() as client:
        user_id, (allowed, other) = await make_user_and_models(admin, first.url, "allowed", "other")
        await subscribe(admin, first.url, user_id, allowed)
        await subscribe(admin, first.url, user_id, other)
        before = REGISTRY.get_sample_value("maas_gateway_api_key_creations_total", {"result": "success"}) or 0
        status, key = await call(admin, "POST", first.url + "/admin/v1/keys",
                                 json={"user_id": user_id, "models": [allowed], "name": "proxy"})
        assert status == 201
        assert key["key"].startswith("sk-") and len(key["key"]) >= 40 and key["key_prefix"] == key["key"][:7]
        assert REGISTRY.get_sample_value("maas_gateway_api_key_creations_total", {"result": "success"}) == before + 1

        for gw in (first, second):
            async with client.post(gw.url + "/v1/chat/completions", json=chat(allowed), headers=bearer(key["key"])) as r:
                assert r.status == 200
            async with client.post(gw.url + "/v1/chat/completions", json=chat(other), headers=bearer(key["key"])) as r:
                assert (r.status, await r.json()) == (403, denied(
                    "MODEL_ACCESS_DENIED",
                    f"Your API key does not have access to this model. Please check your subscription. (model: {other})",
                ))

        status, revoked = await call(admin, "DELETE", first.url + f"/admin/v1/keys/{key['id']}")
        assert status == 200 and revoked["status"] == "revoked" and "key" not in revoked

        async def second_denies() -> bool:
            async with client.post(second.url + "/v1/chat/completions", json=chat(allowed),
                                   headers=bearer(key["key"])) as r:
                return r.status == 401 and await r.json() == denied(
                    "API_KEY_REVOKED", "This API key has been revoked. Create a new key to continue.",
                    None, "authentication_error")

        await eventually(second_denies, timeout=1.0)


async def test_a_key_needs_an_active_subscription_for_every_model_and_names_the_missing_ones(gateway, admin, pool):
    user_id, (ok, suspended, none) = await make_user_and_models(admin, gateway.url, "ok", "suspended", "none")
    await subscribe(admin, gateway.url, user_id, ok)
    await subscribe(admin, gateway.url, user_id, suspended, status="suspended")
    counts = await row_counts(pool)
    before = REGISTRY.get_sample_value("maas_gateway_api_key_creations_total", {"result": "failure"}) or 0
    status, answer = await call(admin, "POST", gateway.url + "/admin/v1/keys",
                                json={"user_id": user_id, "models": [ok, suspended, none]})
    assert (status, answer) == (409, {"error": {
        "message": f"No active subscription for: {suspended}, {none}. Subscribe the user to these models first.",
        "type": "conflict_error", "param": "models", "code": "SUBSCRIPTION_REQUIRED"}})
    assert await row_counts(pool) == counts
    assert REGISTRY.get_sample_value("maas_gateway_api_key_creations_total", {"result": "failure"}) == before + 1


async def test_a_pattern_needs_one_matching_active_subscription(gateway, admin):
    user_id, _ = await make_user_and_models(admin, gateway.url)
    family = "fam" + uuid.uuid4().hex[:6]
    await call(admin, "POST", gateway.url + "/admin/v1/models", json={"id": f"{family}/small"})
    status, answer = await call(admin, "POST", gateway.url + "/admin/v1/keys",
                                json={"user_id": user_id, "models": [f"{family}/*"]})
    assert (status, answer) == (409, {"error": {
        "message": f"No active subscription for: {family}/*. Subscribe the user to these models first.",
        "type": "conflict_error", "param": "models", "code": "SUBSCRIPTION_REQUIRED"}})
    await subscribe(admin, gateway.url, user_id, f"{family}/small")
    status, key = await call(admin, "POST", gateway.url + "/admin/v1/keys",
                             json={"user_id": user_id, "models": [f"{family}/*"], "expires_at": "2999-01-01T00:00:00Z"})
    assert status == 201 and key["models"] == [f"{family}/*"]
    assert key["expires_at"] == "2999-01-01T00:00:00+00:00"


async def test_taking_access_away_is_enforced_by_the_proxy_at_once(gateway, admin, pool):
    user_id, (model,) = await make_user_and_models(admin, gateway.url, "away")
    answer = await subscribe(admin, gateway.url, user_id, model, generate_api_key=True)
    key = answer["api_key"]["key"]
    async with aiohttp.ClientSession() as client:
        async def status_of() -> tuple[int, str | None]:
            async with client.post(gateway.url + "/v1/chat/completions", json=chat(model), headers=bearer(key)) as r:
                error = (await r.json()).get("error")
                if error is None:
                    return r.status, None
                assert error == refusals[error["code"]]  # the whole body, not just its code
                return r.status, error["code"]

        refusals = {
            "SUBSCRIPTION_INACTIVE": denied("SUBSCRIPTION_INACTIVE", "Your subscription to this model is not active. "
                                            f"Please check your subscription. (model: {model})")["error"],
            "USER_INACTIVE": denied("USER_INACTIVE", "Your account is deactivated. Contact your administrator.", None)["error"],
        }

        assert await status_of() == (200, None)
        sub_id = answer["subscription"]["id"]
        status, sub = await call(admin, "PATCH", gateway.url + f"/admin/v1/subscriptions/{sub_id}", json={"status": "suspended"})
        assert (status, sub["status"]) == (200, "suspended")
        assert await status_of() == (403, "SUBSCRIPTION_INACTIVE")
        await call(admin, "PATCH", gateway.url + f"/admin/v1/subscriptions/{sub_id}", json={"status": "active"})
        assert await status_of() == (200, None)
        status, user = await call(admin, "PATCH", gateway.url + f"/admin/v1/users/{user_id}", json={"is_active": False})
        assert (status, user["is_active"]) == (200, False)
        assert await status_of() == (403, "USER_INACTIVE")
        status, answer = await call(admin, "POST", gateway.url + "/admin/v1/keys", json={"user_id": user_id, "models": [model]})
        assert (status, answer) == (409, {"error": {
            "message": f"User {user_id!r} is deactivated; activate it first.",
            "type": "conflict_error", "param": "user_id", "code": "USER_INACTIVE"}})
        await call(admin, "PATCH", gateway.url + f"/admin/v1/users/{user_id}", json={"is_active": True})
        assert await status_of() == (200, None)


async def test_passthrough_keys_are_litellm_virtual_keys_stored_only_as_hash_and_prefix(passthrough, admin, double, pool):
    user_id, (model,) = await make_user_and_models(admin, passthrough.url, "pt")
    await subscribe(admin, passthrough.url, user_id, model)
    status, key = await call(admin, "POST", passthrough.url + "/admin/v1/keys",
                             json={"user_id": user_id, "models": [model], "name": "pt"})
    assert status == 201
    [generate] = [c for c in double.calls if c.path == "/key/generate"]
    assert generate.body == {
        "key": key["key"], "key_alias": f"maas-gateway/{key['id']}",  # minted by the gateway, named by its id
        "user_id": user_id, "models": [model], "max_budget": 100.0, "tpm_limit": 1000, "rpm_limit": 60,
        "metadata": {"maas_gateway_key_id": key["id"], "name": "pt"},
    }
    assert key["sync_status"] == "synced"
    token = hash_key(key["key"])
    assert double.keys[token]["user_id"] == user_id  # the key LiteLLM made is the one handed out
    row = await pool.fetchrow("SELECT key_hash, key_prefix FROM api_keys WHERE id = $1", key["id"])
    assert tuple(row) == (token, key["key"][:7])

    async with aiohttp.ClientSession() as client:
        async with client.post(passthrough.url + "/v1/chat/completions", json=chat(model), headers=bearer(key["key"])) as r:
            assert r.status == 200  # forwarded unchanged and accepted by "LiteLLM"
    status, _ = await call(admin, "DELETE", passthrough.url + f"/admin/v1/keys/{key['id']}")
    assert status == 200
    assert [c.body for c in double.calls if c.path == "/key/delete"] == [{"keys": [token]}]
    assert token not in double.keys


async def test_passthrough_pushes_subscription_and_user_changes_to_litellm_keys(passthrough, admin, double):
    user_id, (kept, dropped) = await make_user_and_models(admin, passthrough.url, "kept", "dropped")
    await subscribe(admin, passthrough.url, user_id, kept)
    sub = (await subscribe(admin, passthrough.url, user_id, dropped))["subscription"]
    _, key = await call(admin, "POST", passthrough.url + "/admin/v1/keys", json={"user_id": user_id, "models": [kept, dropped]})
    token = hash_key(key["key"])

    def updates() -> list:
        return [c.body for c in double.calls if c.path == "/key/update"]

    await call(admin, "PATCH", passthrough.url + f"/admin/v1/subscriptions/{sub['id']}", json={"status": "cancelled"})
    assert updates()[-1] == {"key": token, "models": [kept], "blocked": False}
    await call(admin, "PATCH", passthrough.url + f"/admin/v1/users/{user_id}", json={"is_active": False})
    assert updates()[-1] == {"key": token, "models": [kept], "blocked": True}
    assert double.keys[token]["blocked"] is True
    await call(admin, "PATCH", passthrough.url + f"/admin/v1/users/{user_id}", json={"is_active": True})
    await call(admin, "PATCH", passthrough.url + f"/admin/v1/subscriptions/{sub['id']}", json={"status": "active"})
    assert updates()[-1] == {"key": token, "models": sorted([kept, dropped]), "blocked": False}


async def test_passthrough_revocation_with_litellm_down_still_revokes_and_heals_later(passthrough, admin, double, pool):
    user_id, (model,) = await make_user_and_models(admin, passthrough.url, "down")
    answer = await subscribe(admin, passthrough.url, user_id, model, generate_api_key=True)
    key = answer["api_key"]
    await double.set_down(True)
    status, revoked = await call(admin, "DELETE", passthrough.url + f"/admin/v1/keys/{key['id']}")
    assert (status, revoked["status"], revoked["sync_status"]) == (200, "revoked", "error")
    async with aiohttp.ClientSession() as client:
        async with client.post(passthrough.url + "/v1/chat/completions", json=chat(model), headers=bearer(key["key"])) as r:
            assert (r.status, await r.json()) == (401, denied(  # the gateway denies at once, LiteLLM or not
                "API_KEY_REVOKED", "This API key has been revoked. Create a new key to continue.", None,
                "authentication_error"))
    await double.set_down(False)
    token = hash_key(key["key"])
    await eventually(lambda: token not in double.keys, timeout=10)  # the reconciler deleted it
    await eventually(lambda: _key_synced(pool, key["id"]), timeout=10)


async def _key_synced(pool, key_id: str) -> bool:
    return await pool.fetchval("SELECT sync_status FROM api_keys WHERE id = $1", key_id) == "synced"


async def test_passthrough_key_generation_failure_leaves_nothing_half_made(passthrough, admin, double, pool):
    user_id, (model,) = await make_user_and_models(admin, passthrough.url, "half")
    counts = await row_counts(pool)
    double.fail_500 = True  # the user is synced already: only /key/generate meets the failure
    status, answer = await call(admin, "POST", passthrough.url + "/admin/v1/subscriptions",
                                json={"user_id": user_id, "model_id": model, "generate_api_key": True})
    assert (status, answer) == (503, {"error": {
        "message": "Service temporarily unavailable. Please try again later. (LiteLLM /key/generate answered 500)",
        "type": "service_unavailable_error", "param": None, "code": "LITELLM_UNAVAILABLE"}})
    assert await row_counts(pool) == counts
    assert double.keys == {}
