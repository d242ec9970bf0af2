"""Bounded cost per request (OWASP API4): failed authentications per address, a bounded pool wait,
hostile JSON, on the gateway served by uvicorn with real Postgres and Redis."""

from __future__ import annotations

import asyncio
import io
import secrets
import time
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from gateway.serving.authguard import AuthGuard
from gateway.config import SecurityConfig
from gateway.dev.services import free_port
from gateway.ops.metrics import KEY_CACHE_LOOKUPS
from tests.support import bearer, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

LIMIT = 5
LIMITED = {
    "error": {
        "message": "Too many requests. Please wait before retrying. (too many failed authentications from this address)",
        "type": "rate_limit_error",
        "param": None,
        "code": "RATE_LIMITED",
    }
}
INVALID = {
    "error": {
        "message": "Invalid API key. Check the key, or create a new one.",
        "type": "authentication_error",
        "param": None,
        "code": "INVALID_API_KEY",
    }
}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def limited_config(postgres_url, redis_url, upstream_url, **sections):
    """Requests come from 127.0.0.1, a trusted proxy here: X-Forwarded-For names each test's own client."""
    return make_config(
        postgres_url, redis_url, upstream_url,
        server={"trusted_proxies": ["127.0.0.1/32"]},
        security={"failed_auth_limit": LIMIT, "failed_auth_window_seconds": 60},
        **sections,
    )


def new_address() -> str:
    return f"2001:db8::{secrets.randbits(16):x}:{secrets.randbits(16):x}"


async def post(http, url: str, key: str, address: str | None, body: dict = CHAT) -> tuple[int, dict, dict]:
    headers = bearer(key) | ({"x-forwarded-for": address} if address else {})
    async with http.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


def random_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


async def one_window_ahead(seconds: float = 10.0) -> None:
    """A test's failures must fall in one 60 s window (they take well under a second):
    when the current one ends within `seconds`, start in the next."""
    left = 60 - time.time() % 60
    if left < seconds:
        await asyncio.sleep(left)  # not a synchronisation: the window is wall-clock time


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def _retry_after(headers: dict, window_end_within: float) -> int:
    """Retry-After is the seconds to the window's end, measured here just after the answer."""
    value = int(headers["Retry-After"])
    assert 1 <= value <= 60
    assert window_end_within - 1 <= value <= window_end_within + 5  # rounded up, and answered a moment ago
    return value


@pytest.mark.parametrize("mode", ["enforce", "off"])
async def test_bad_keys_from_one_address_get_429_while_other_addresses_are_served(
    pool, redis_url, postgres_url, fake_upstream, http, mode
):
    good = await seed_key(pool, models=["gpt-4o-mini"])
    config = limited_config(postgres_url, redis_url, fake_upstream.url, enforcement={"mode": mode})
    async with running_gateway(config) as gw:
        attacker = new_address()
        await one_window_ahead()
        for i in range(LIMIT):
            key = random_key() if i % 2 else "not-a-key-" + secrets.token_hex(8)  # malformed ones count too
            assert (await post(http, gw.url, key, attacker))[::2] == (401, INVALID)
        status, headers, body = await post(http, gw.url, random_key(), attacker)
        assert (status, body) == (429, LIMITED)
        _retry_after(headers, 60 - time.time() % 60)
        # refused now before any lookup, whatever the key: a cold good key too
        status, headers, body = await post(http, gw.url, good.key, attacker)
        assert (status, body) == (429, LIMITED)
        # another address is served, with the same key
        assert (await post(http, gw.url, good.key, new_address()))[0] == 200
        # and a key this worker has cached stays served from the refused address (no I/O to protect)
        assert (await post(http, gw.url, good.key, attacker))[0] == 200


async def test_an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for(pool, redis_url, postgres_url, fake_upstream, http):
    config = make_config(postgres_url, None, fake_upstream.url, security={"failed_auth_limit": LIMIT})
    async with running_gateway(config) as gw:  # no trusted proxies, no Redis: in-process counts
        for _ in range(LIMIT):
            assert (await post(http, gw.url, random_key(), new_address()))[0] == 401
        status, _, body = await post(http, gw.url, random_key(), new_address())
        assert (status, body) == (429, LIMITED)


async def test_two_instances_sharing_redis_share_the_count(pool, redis_url, postgres_url, fake_upstream, http):
    config = limited_config(postgres_url, redis_url, fake_upstream.url)
    async with running_gateway(config) as first, running_gateway(config) as second:
        attacker = new_address()
        await one_window_ahead()
        for i in range(LIMIT):
            assert (await post(http, (first, second)[i % 2].url, random_key(), attacker))[0] == 401
        status, headers, body = await post(http, second.url, random_key(), attacker)
        assert (status, body) == (429, LIMITED)
        status, _, body = await post(http, first.url, random_key(), attacker)
        assert (status, body) == (429, LIMITED)


async def test_a_busy_pool_answers_503_after_the_bounded_wait(pool, redis_url, postgres_url, fake_upstream, http):
    config = make_config(postgres_url, None, fake_upstream.url, database={"pool_min": 1, "pool_max": 1, "acquire_timeout_ms": 200})
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(config) as gw:
        async with gw.state.pool.acquire():  # the one connection is busy (as under a flood of cold keys)
            started = time.monotonic()
            status, headers, body = await post(http, gw.url, seeded.key, None)
            elapsed = time.monotonic() - started
        assert (status, headers["Retry-After"], body) == (503, "1", {
            "error": {
                "message": "API keys cannot be checked right now. Please try again later.",
                "type": "service_unavailable_error",
                "param": None,
                "code": "KEY_STORE_UNAVAILABLE",
            }
        })
        assert 0.2 <= elapsed < 5
        assert (await post(http, gw.url, seeded.key, None))[0] == 200  # the pool free again: served


async def test_malformed_keys_never_reach_the_key_store(pool, redis_url, postgres_url, fake_upstream, http):
    negative = KEY_CACHE_LOOKUPS.labels(tier="postgres", result="negative")
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        before = negative._value.get()
        for key in ("garbage-" + uuid.uuid4().hex, "Bearer-ish", "x" * 600):
            assert (await post(http, gw.url, key, None))[::2] == (401, INVALID)
        assert negative._value.get() == before
        assert (await post(http, gw.url, random_key(), None))[::2] == (401, INVALID)
        assert negative._value.get() == before + 1  # a well-formed unknown key is looked up


async def test_a_hostile_json_body_is_refused_before_it_is_parsed(pool, redis_url, postgres_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    body = b'{"model":"gpt-4o-mini","messages":[' + b"{}," * (8 * 1024 * 1024) + b'{}]}'
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        headers = bearer(seeded.key) | {"content-type": "application/json"}
        async with http.post(gw.url + "/v1/chat/completions", data=io.BytesIO(body), headers=headers) as r:
            assert (r.status, await r.json()) == (400, {
                "error": {
                    "message": "The request could not be understood. (the JSON body holds more than 500000 values "
                    "('{', '[' and ',' counted); send fewer per request)",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "INVALID_REQUEST",
                }
            })
    assert fake_upstream.seen == []


async def test_with_redis_unreachable_failures_are_counted_in_process_and_refusals_end_with_the_window():
    redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=0.5, socket_timeout=0.5)
    now = [1000.0]
    guard = AuthGuard(SecurityConfig(failed_auth_limit=2, failed_auth_window_seconds=60), (), redis, clock=lambda: now[0])
    try:
        assert [await guard.failed("198.51.100.7") for _ in range(2)] == [None, None]
        limited = await guard.failed("198.51.100.7")
        assert (limited.status, limited.code, limited.retry_after) == (429, "RATE_LIMITED", 20)  # the window ends at 1020
        assert await guard.failed("198.51.100.8") is None  # another address has its own count
        now[0] = 1019.5
        assert guard.refusal("198.51.100.7").retry_after == 1
        now[0] = 1020.0
        assert guard.refusal("198.51.100.7") is None
        assert await guard.failed("198.51.100.7") is None  # a new window, a new count
    finally:
        await redis.aclose()
