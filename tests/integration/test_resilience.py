"""Failure of each dependency in turn, on real servers: LiteLLM (the fake upstream, stopped
and started again on its port), Redis and Postgres (dedicated servers, killed and restarted).

The gateway must degrade, not fall over: an open breaker answers in well under 5 ms
with 503 LITELLM_UNAVAILABLE and Retry-After and closes by itself; Redis down costs
nothing visible; Postgres down keeps cached keys working and answers 503 (not 401)
for keys it cannot check. Timing is waited on through observable state (eventually()).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from gateway.store import db

from gateway.dev import services as devservices

from gateway.store import keys
from gateway.ops.metrics import BREAKER_TRANSITIONS, KEY_CACHE_LOOKUPS
from tests.fakes.upstream import FakeUpstream
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

UNAVAILABLE = {
    "error": {
        "message": "Service temporarily unavailable. Please try again later.",
        "type": "service_unavailable_error",
        "param": None,
        "code": "LITELLM_UNAVAILABLE",
    }
}


def chat(model: str = "gpt-4o-mini", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, key: str, body: dict | None = None) -> tuple[int, dict, bytes]:
    async with http.post(url + "/v1/chat/completions", json=body or chat(), headers=bearer(key)) as r:
        return r.status, r.headers.copy(), await r.read()


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def scrape(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + "/metrics") as r:
        assert r.status == 200
        return await r.text()


def transitions(target: str, old: str, new: str) -> float:
    return BREAKER_TRANSITIONS.labels(target=target, from_state=old, to_state=new)._value.get()


async def serve_fake_on(fake: FakeUpstream, port: int) -> None:
    """Start the (stopped) fake upstream again on the port it had: LiteLLM coming back."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake._handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake._runner = runner


@pytest.fixture
async def own_upstream():
    """A fake LiteLLM of this test's own, so stopping it disturbs no other test."""
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()  # idempotent: a test may have stopped it already


class AsgiClient:
    """Calls the gateway's ASGI app in-process: the gateway's own time, without a socket."""

    def __init__(self, app) -> None:
        self.app = app

    async def post(self, key: str, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
            "headers": [(b"host", b"gateway"), (b"authorization", f"Bearer {key}".encode()),
                        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
        }
        delivered = False
        forever = asyncio.Event()

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await forever.wait()  # the client stays connected
            return {"type": "http.disconnect"}

        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        await self.app(scope, receive, send)
        start = messages[0]
        return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in messages[1:])


# --- LiteLLM ---------------------------------------------------------------------------------


async def test_litellm_killed_fails_fast_then_recovers_by_itself(pool, postgres_url, redis_url, own_upstream, http):
    fake = own_upstream
    port = urlsplit(fake.url).port
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(
        postgres_url, redis_url, fake.url,
        breaker={"consecutive_failures": 3, "min_requests": 1000, "reset_timeout_seconds": 1.0},
        health={"interval_seconds": 0.1},
    )
    async with running_gateway(config) as gw:
        assert (await post(http, gw.url, seeded.key))[0] == 200
        opened_before = transitions("litellm", "closed", "open")

        await fake.stop()  # LiteLLM is gone: connections refused
        for _ in range(3):  # the failures that open the breaker are answered as what they are
            status, headers, body = await post(http, gw.url, seeded.key)
            assert status == 503 and "retry-after" in headers
            assert orjson.loads(body)["error"]["code"] == "LITELLM_UNAVAILABLE"
        assert gw.state.breaker.state == "open"
        assert transitions("litellm", "closed", "open") == opened_before + 1

        # open: no connection attempt, the seed's message, Retry-After
        status, headers, body = await post(http, gw.url, seeded.key)
        assert (status, orjson.loads(body)) == (503, UNAVAILABLE)
        assert headers["Retry-After"] == "1"  # the reset timeout, in whole seconds
        assert 'maas_gateway_circuit_breaker_state{target="litellm"} 1.0' in await scrape(http, gw.url)
        status, health = await get_json(http, gw.url + "/health/integration")
        assert (status, health["status"], health["litellm"]["circuit_breaker"]) == (200, "degraded", "open")
        await eventually(lambda: gw.state.health.litellm.status == "unhealthy", timeout=5)

        # LiteLLM comes back; nobody sends a request: the health probe's trial closes the breaker
        await serve_fake_on(fake, port)
        await eventually(lambda: gw.state.breaker.state == "closed", timeout=10)
        assert transitions("litellm", "half-open", "closed") >= 1
        assert 'maas_gateway_circuit_breaker_state{target="litellm"} 0.0' in await scrape(http, gw.url)
        assert (await post(http, gw.url, seeded.key))[0] == 200
        status, health = await get_json(http, gw.url + "/health/integration")
        assert health["litellm"]["circuit_breaker"] == "closed"


async def test_open_breaker_refuses_without_asking_litellm_in_milliseconds(pool, postgres_url, redis_url, own_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(
        postgres_url, redis_url, own_upstream.url,
        breaker={"consecutive_failures": 1, "min_requests": 1000, "reset_timeout_seconds": 60},
        health={"integration_check": False},
    )
    async with running_gateway(config) as gw:
        client = AsgiClient(gw.app)
        body = orjson.dumps(chat())
        assert (await client.post(seeded.key, body))[0] == 200  # the key is warm
        own_upstream.fault, own_upstream.status = "status", 503  # one failure opens it
        assert (await client.post(seeded.key, body))[0] == 503
        assert gw.state.breaker.state == "open"
        own_upstream.fault = None  # LiteLLM answers again, but an open breaker does not ask it
        asked = len(own_upstream.seen)
        elapsed = []
        for _ in range(50):
            started = time.perf_counter()
            status, headers, answer = await client.post(seeded.key, body)
            elapsed.append(time.perf_counter() - started)
            assert (status, orjson.loads(answer)) == (503, UNAVAILABLE)
            assert int(headers[b"retry-after"]) in range(55, 61)
        assert len(own_upstream.seen) == asked  # refused without a call: why it is fast
        # Typically well under 1 ms each; margins a busy 2-core machine keeps.
        assert statistics.median(elapsed) < 0.02, elapsed
        assert max(elapsed) < 0.5, elapsed
        # and over HTTP, the same answer
        status, headers, answer = await post(http, gw.url, seeded.key)
        assert (status, orjson.loads(answer)) == (503, UNAVAILABLE) and int(headers["Retry-After"]) >= 55


async def test_a_generation_longer_than_the_request_timeout_is_504_and_no_breaker_failure(
    pool, postgres_url, redis_url, fake_upstream, http
):
    """litellm.request_timeout_seconds bounds inference; litellm.timeout_ms (shorter here) does not."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(
        postgres_url, redis_url, fake_upstream.url,
        litellm={"sync_users": False, "timeout_ms": 100, "request_timeout_seconds": 0.6},
        breaker={"consecutive_failures": 2, "min_requests": 1, "reset_timeout_seconds": 60},
        health={"integration_check": False},
    )
    async with running_gateway(config) as gw:
        assert (await post(http, gw.url, seeded.key))[0] == 200  # warm: the timing below is LiteLLM's
        fake_upstream.fault, fake_upstream.delay = "slow", 0.3  # three times litellm.timeout_ms
        assert (await post(http, gw.url, seeded.key))[0] == 200
        fake_upstream.delay = 5.0
        for _ in range(3):  # more than consecutive_failures
            started = time.perf_counter()
            status, headers, body = await post(http, gw.url, seeded.key)
            elapsed = time.perf_counter() - started
            assert status == 504
            assert orjson.loads(body) == {
                "error": {
                    "message": "The model service did not answer in time. Please try again later.",
                    "type": "timeout_error",
                    "param": None,
                    "code": "LITELLM_TIMEOUT",
                }
            }
            assert 0.6 <= elapsed < 0.6 + 1.0, elapsed
        assert gw.state.breaker.state == "closed"  # a slow generation is not LiteLLM failing
        fake_upstream.fault = None
        assert (await post(http, gw.url, seeded.key))[0] == 200


async def test_only_litellms_own_failures_count(pool, postgres_url, redis_url, fake_upstream, http):
    """4xx and a provider's 429 pass through and never open the breaker; LiteLLM's 502/503/504 do."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(
        postgres_url, redis_url, fake_upstream.url,
        breaker={"consecutive_failures": 3, "min_requests": 1000, "reset_timeout_seconds": 60},
        health={"integration_check": False},
    )
    async with running_gateway(config) as gw:
        fake_upstream.fault = "status"
        for code, relayed in ((429, "429"), (400, "400"), (404, "404"), (429, "429"), (401, "LITELLM_ERROR"), (429, "429"),
                              (422, "422")):
            fake_upstream.status = code
            status, _, body = await post(http, gw.url, seeded.key)
            assert (status, orjson.loads(body)["error"]["code"]) == (502 if code == 401 else code, relayed)
        assert gw.state.breaker.state == "closed"
        for code in (502, 504, 503):
            fake_upstream.status = code
            status, _, body = await post(http, gw.url, seeded.key)
            assert (status, orjson.loads(body)["error"]["code"]) == (code, "LITELLM_ERROR")  # the gateway's words
        assert gw.state.breaker.state == "open"
        seen = len(fake_upstream.seen)
        status, _, body = await post(http, gw.url, seeded.key)
        assert (status, orjson.loads(body)) == (503, UNAVAILABLE)
        assert len(fake_upstream.seen) == seen


async def test_half_open_lets_one_trial_through(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    config = make_config(
        postgres_url, redis_url, fake_upstream.url,
        breaker={"consecutive_failures": 2, "min_requests": 1000, "reset_timeout_seconds": 0.3},
        health={"integration_check": False},
    )
    async with running_gateway(config) as gw:
        fake_upstream.fault, fake_upstream.status = "status", 502
        for _ in range(2):
            assert (await post(http, gw.url, seeded.key))[0] == 502
        assert gw.state.breaker.state == "open"
        await eventually(gw.state.breaker.trial_due, timeout=5)
        fake_upstream.seen.clear()
        fake_upstream.fault, fake_upstream.delay = "slow", 0.5  # LiteLLM is back, and slow to answer
        results = await asyncio.gather(*(post(http, gw.url, seeded.key) for _ in range(10)))
        assert sorted(status for status, _, _ in results) == [200] + [503] * 9
        assert len(fake_upstream.seen) == 1
        assert gw.state.breaker.state == "closed"


async def test_a_failure_mid_stream_ends_with_an_error_event(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault = "stream_cut"
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        async with http.post(gw.url + "/v1/chat/completions", json=chat(stream=True), headers=bearer(seeded.key)) as r:
            assert r.status == 200
            body = await r.read()
    assert_ends_with_error_event(body, chunks=2)


async def test_a_silent_stream_ends_at_the_idle_timeout_with_an_error_event(pool, postgres_url, redis_url, fake_upstream, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.chunk_gap = 5.0  # one chunk, then silence
    config = make_config(postgres_url, redis_url, fake_upstream.url, litellm={"sync_users": False, "stream_idle_timeout_ms": 300})
    async with running_gateway(config) as gw:
        started = time.perf_counter()
        async with http.post(gw.url + "/v1/chat/completions", json=chat(stream=True), headers=bearer(seeded.key)) as r:
            assert r.status == 200
            body = await r.read()
        elapsed = time.perf_counter() - started
    assert 0.3 <= elapsed < 2.0, elapsed
    assert_ends_with_error_event(body, chunks=1)


def assert_ends_with_error_event(body: bytes, chunks: int) -> None:
    events = [e for e in body.split(b"\n\n") if e]
    assert len(events) == chunks + 1, events
    assert all(orjson.loads(e.removeprefix(b"data: "))["object"] == "chat.completion.chunk" for e in events[:-1])
    assert b"[DONE]" not in body
    assert orjson.loads(events[-1].removeprefix(b"data: ")) == {
        "error": {
            "message": "The model service stopped answering mid-stream. Please try again.",
            "type": "service_unavailable_error",
            "param": None,
            "code": "LITELLM_STREAM_INTERRUPTED",
        }
    }


# --- Redis -----------------------------------------------------------------------------------


class Traffic:
    """Requests in a loop, from a few keys, until stopped; every status is kept."""

    def __init__(self, http: aiohttp.ClientSession, url: str, keys: list[str]) -> None:
        self.http, self.url, self.keys = http, url, keys
        self.statuses: list[int] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        i = 0
        while True:
            status, _, body = await post(self.http, self.url, self.keys[i % len(self.keys)])
            self.statuses.append(status)
            i += 1

    def sent_more(self, than: int):
        return lambda: len(self.statuses) >= than

    async def stop(self) -> list[int]:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.statuses



async def test_redis_down_and_back_under_traffic_serves_without_a_5xx(pool, postgres_url, fake_upstream, http, workdir, monkeypatch):
    monkeypatch.setattr(keys, "REDIS_BACKOFF_SECONDS", 0.3)  # how long L2 is skipped after an error
    redis = devservices.start_redis(workdir / "redis")
    try:
        seeded = [await seed_key(pool, models=["gpt-4o-mini"]) for _ in range(3)]
        unknown = "sk-unknown-" + uuid.uuid4().hex
        config = make_config(postgres_url, redis.url, fake_upstream.url, cache={"ttl_seconds": 0.05})  # L1 barely helps
        async with running_gateway(config) as gw:
            traffic = Traffic(http, gw.url, [s.key for s in seeded] + [unknown])
            await eventually(traffic.sent_more(20), timeout=10)
            redis.kill()
            mark = len(traffic.statuses)
            await eventually(lambda: gw.state.health.redis.status == "unhealthy", timeout=5)
            await eventually(traffic.sent_more(mark + 40), timeout=10)
            status, ready = await get_json(http, gw.url + "/health/ready")
            assert (status, ready["status"]) == (200, "ready")

            redis = devservices.restart(redis)
            await eventually(lambda: gw.state.health.redis.status == "healthy", timeout=5)
            redis_hits = KEY_CACHE_LOOKUPS.labels(tier="redis", result="hit")._value.get()
            await eventually(lambda: KEY_CACHE_LOOKUPS.labels(tier="redis", result="hit")._value.get() > redis_hits, timeout=10)
            mark = len(traffic.statuses)
            await eventually(traffic.sent_more(mark + 20), timeout=10)
            statuses = await traffic.stop()
        assert set(statuses) == {200, 401}, sorted(set(statuses))
        assert statuses.count(401) >= len(statuses) // 4 - 1  # the unknown key: refused as unknown, never 5xx
    finally:
        redis.stop()


# --- Postgres --------------------------------------------------------------------------------


async def test_postgres_down_keeps_cached_keys_and_refuses_unknown_ones_with_503(fake_upstream, http, workdir):
    postgres = await asyncio.to_thread(devservices.start_postgres, workdir / "pg")
    try:
        await db.migrate_url(postgres.url)
        seed_pool = await asyncpg.create_pool(postgres.url, min_size=1, max_size=2)
        try:
            warm, cold = await seed_key(seed_pool, models=["gpt-4o-mini"]), await seed_key(seed_pool, models=["gpt-4o-mini"])
        finally:
            await seed_pool.close()
        unknown = "sk-unknown-" + uuid.uuid4().hex
        config = make_config(postgres.url, None, fake_upstream.url, cache={"ttl_seconds": 0.2}, health={"interval_seconds": 0.1})
        async with running_gateway(config) as gw, running_gateway(config) as idle:
            assert (await post(http, gw.url, warm.key))[0] == 200
            assert (await get_json(http, idle.url + "/health/ready"))[0] == 200

            await asyncio.to_thread(postgres.stop)
            await eventually(lambda: gw.state.health.postgres.status == "unhealthy", timeout=5)
            stale = KEY_CACHE_LOOKUPS.labels(tier="l1", result="stale")._value.get()
            for _ in range(5):  # past the L1 TTL: every lookup tries Postgres, then serves the last record
                assert (await post(http, gw.url, warm.key))[0] == 200
                await eventually(lambda: gw.state.store.cached(keys.key_digest(warm.key)) is False, timeout=2)
            assert KEY_CACHE_LOOKUPS.labels(tier="l1", result="stale")._value.get() >= stale + 5
            for key in (cold.key, unknown):
                status, headers, body = await post(http, gw.url, key)
                assert (status, orjson.loads(body)["error"]["code"], headers["Retry-After"]) == (503, "KEY_STORE_UNAVAILABLE", "1")
            status, ready = await get_json(http, gw.url + "/health/ready")
            assert (status, ready["status"], ready["postgres"]) == (200, "ready", False)  # warm cache
            await eventually(lambda: idle.state.health.postgres.status == "unhealthy", timeout=5)
            status, ready = await get_json(http, idle.url + "/health/ready")
            assert (status, ready["status"]) == (503, "not_ready")  # nothing cached, nothing to ask

            postgres = await asyncio.to_thread(devservices.restart, postgres)

            async def recovered() -> bool:
                return (await post(http, gw.url, cold.key))[0] == 200

            await eventually(recovered, timeout=15, interval=0.1)
            assert (await post(http, gw.url, unknown))[0] == 401
            assert (await post(http, gw.url, warm.key))[0] == 200
            await eventually(lambda: idle.state.health.postgres.status == "healthy", timeout=5)
            assert (await get_json(http, idle.url + "/health/ready"))[0] == 200
    finally:
        await asyncio.to_thread(postgres.stop)
