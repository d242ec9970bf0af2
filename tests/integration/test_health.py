"""/health/live, /health/ready and /health/integration, answered from the background probe."""

from __future__ import annotations

import calendar
import time

import aiohttp
import pytest

from gateway.config import parse_config
from tests.support import MASTER_KEY, eventually, make_config, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def test_live_and_ready(pool, postgres_url, redis_url, fake_upstream, http):
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        assert await get(http, gw.url + "/health/live") == (200, {"status": "alive"})
        status, ready = await get(http, gw.url + "/health/ready")
    assert status == 200
    assert ready == {"status": "ready", "config_loaded": True, "postgres": True, "cached_keys": 0, "enforcement": "enforce"}


async def test_integration_has_the_seeds_shape_plus_postgres_and_redis(pool, postgres_url, redis_url, fake_upstream, http):
    synced_at = int(time.time())
    async with pool.acquire() as conn:  # a user synced with LiteLLM just now, by any instance
        await conn.execute(
            "INSERT INTO users (id, username, email, is_active, sync_status, last_synced_at) "
            "VALUES ($1, $1, $1 || '@example.com', true, 'synced', to_timestamp($2))",
            f"health-{synced_at}-{time.monotonic_ns()}", float(synced_at),
        )
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        status, report = await get(http, gw.url + "/health/integration")
        metrics = await (await http.get(gw.url + "/metrics")).text()
    assert status == 200
    assert set(report) == {"status", "litellm", "postgres", "redis", "circuit_breakers", "checked_at"}
    assert report["status"] == "healthy"
    litellm = report["litellm"]
    assert set(litellm) == {"status", "latency", "last_sync", "circuit_breaker", "last_failure"}
    assert (litellm["status"], litellm["circuit_breaker"], litellm["last_failure"]) == ("healthy", "closed", None)
    assert isinstance(litellm["latency"], float) and litellm["latency"] >= 0
    assert calendar.timegm(time.strptime(litellm["last_sync"], "%Y-%m-%dT%H:%M:%SZ")) >= synced_at
    for name in ("postgres", "redis"):
        assert report[name]["status"] == "healthy" and report[name]["latency"] >= 0
    assert report["circuit_breakers"] == {"litellm": "closed"}
    for dependency in ("litellm", "postgres", "redis"):
        assert f'maas_gateway_dependency_up{{dependency="{dependency}"}} 1.0' in metrics
    assert "maas_gateway_litellm_last_user_sync_timestamp_seconds" in metrics


async def test_integration_reports_litellm_down(pool, postgres_url, redis_url, http):
    from gateway.dev.services import free_port

    config = make_config(postgres_url, redis_url, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    async with running_gateway(config) as gw:
        status, report = await get(http, gw.url + "/health/integration")
        assert (status, report["status"], report["litellm"]["status"]) == (200, "degraded", "unhealthy")
        assert report["litellm"]["circuit_breaker"] == "closed"  # the probe reports; only calls move the breaker
        assert (await get(http, gw.url + "/health/ready"))[0] == 200  # LiteLLM is not needed to be ready


async def test_integration_health_check_false_turns_the_probe_off(pool, postgres_url, redis_url, fake_upstream, http):
    environ = {
        "DATABASE_URL": postgres_url, "REDIS_URL": redis_url, "LITELLM_URL": fake_upstream.url,
        "LITELLM_API_KEY": MASTER_KEY, "LITELLM_SYNC_USERS": "false", "INTEGRATION_HEALTH_CHECK": "false",
    }
    config = parse_config({"health": {"interval_seconds": 0.05}}, environ)
    async with running_gateway(config) as gw:
        first = gw.state.health
        await eventually(lambda: gw.state.health is not first, timeout=5)  # Postgres/Redis are still probed
        assert gw.state.health.litellm is None
        assert await get(http, gw.url + "/health/integration") == (
            200, {"status": "disabled", "detail": "INTEGRATION_HEALTH_CHECK is false"}
        )
        assert (await get(http, gw.url + "/health/ready"))[0] == 200


async def test_integration_tells_a_failed_request_and_an_open_breaker_at_once(pool, postgres_url, redis_url, http):
    """The probe runs once a minute here: what /health/integration says comes from the requests."""
    from tests.fakes.upstream import FakeUpstream
    from tests.support import bearer, seed_key

    fake = FakeUpstream()
    await fake.start()
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(postgres_url, redis_url, fake.url, health={"interval_seconds": 60},
                         breaker={"consecutive_failures": 2, "min_requests": 1000, "reset_timeout_seconds": 60})
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with running_gateway(config) as gw:
            status, report = await get(http, gw.url + "/health/integration")
            assert (report["status"], report["litellm"]["status"]) == ("healthy", "healthy")
            await fake.stop()  # LiteLLM goes away; the probe will not look for a minute
            async with http.post(gw.url + "/v1/chat/completions", json=chat, headers=bearer(seeded.key)) as r:
                assert r.status == 503
            status, report = await get(http, gw.url + "/health/integration")
            assert (status, report["status"]) == (200, "degraded")
            assert (report["litellm"]["status"], report["litellm"]["circuit_breaker"]) == ("unhealthy", "closed")
            assert report["litellm"]["last_failure"]["reason"] == "LiteLLM unreachable"
            async with http.post(gw.url + "/v1/chat/completions", json=chat, headers=bearer(seeded.key)) as r:
                assert r.status == 503  # the second failure in a row opens the breaker
            status, report = await get(http, gw.url + "/health/integration")
            assert (report["litellm"]["status"], report["litellm"]["circuit_breaker"]) == ("unhealthy", "open")
            assert report["circuit_breakers"]["litellm"] == "open"
    finally:
        await fake.stop()
