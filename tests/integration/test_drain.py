"""Graceful drain on SIGTERM, with real processes: `maas-gateway serve` subprocesses, paced
streams from the fake upstream (chunk_gap), and the signal sent mid-stream."""

from __future__ import annotations

import asyncio
import errno
import signal
import time

import aiohttp
import orjson
import pytest

from tests.processes import Gateway, gateway_env
from tests.support import bearer, eventually, seed_key, sse_events

pytestmark = pytest.mark.integration

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def env(postgres_url, redis_url, fake_upstream) -> dict[str, str]:
    return gateway_env(postgres_url, redis_url, fake_upstream.url)


async def new_connection_status(url: str, key: str) -> int | None:
    """A request on a connection of its own: its status, or None when no connection is accepted: refused,
    or reset before any answer (a connection the kernel queued in the listen backlog is reset when the
    gateway closes its listener: the gateway never accepted it; seen once in 19 runs of the suite)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        try:
            async with fresh.post(url + "/v1/chat/completions", json=CHAT, headers=bearer(key)) as r:
                await r.read()
                return r.status
        except aiohttp.ClientConnectorError:
            return None
        except aiohttp.ClientOSError as exc:
            if exc.errno == errno.ECONNRESET:
                return None
            raise


async def ready_status(url: str) -> tuple[int, dict] | None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        try:
            async with fresh.get(url + "/health/ready") as r:
                return r.status, await r.json()
        except aiohttp.ClientConnectorError:
            return None


async def test_sigterm_mid_stream_cuts_no_stream_and_serves_new_requests_during_the_delay(
    pool, fake_upstream, env, tmp_path
):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.stream_chunks, fake_upstream.chunk_gap = 16, 0.5  # each stream takes 8 s
    gateway = Gateway(tmp_path, env, {"drain_delay_seconds": 1.5, "drain_seconds": 60})
    first_chunks = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await gateway.start(http)
        try:
            async def stream() -> bytes:
                nonlocal first_chunks
                body = {**CHAT, "stream": True}
                async with http.post(gateway.url + "/v1/chat/completions", json=body, headers=bearer(seeded.key)) as r:
                    assert r.status == 200
                    head = await r.content.readany()
                    first_chunks += 1
                    return head + await r.content.read()

            streams = [asyncio.create_task(stream()) for _ in range(20)]
            await eventually(lambda: first_chunks == 20, timeout=20)
            gateway.terminate()
            signalled = time.monotonic()

            async def draining() -> bool:
                answer = await ready_status(gateway.url)
                return answer is not None and answer[0] == 503 and answer[1]["status"] == "draining"

            await eventually(draining, timeout=1.0)  # "at once": well within the 1.5 s delay
            assert await new_connection_status(gateway.url, seeded.key) == 200  # still accepted, and served

            async def refused() -> bool:
                return await new_connection_status(gateway.url, seeded.key) is None

            await eventually(refused, timeout=5, interval=0.1)  # the listener closed after the delay ...
            assert time.monotonic() - signalled >= 1.5
            assert not any(task.done() for task in streams)  # ... while the streams still run

            bodies = await asyncio.wait_for(asyncio.gather(*streams), 30)
            for body in bodies:
                parts = sse_events(body)
                assert parts[-1] == b"[DONE]"  # every stream ran to its end
                chunks = [orjson.loads(p) for p in parts[:-1]]
                assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 16  # 16 chunks; no usage chunk (not asked for)
                assert not any("error" in c for c in chunks)
            assert await gateway.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            await gateway.stop()
    log = gateway.log.read_text()
    assert "draining; readiness is 503" in log
    assert "Application shutdown complete." in log


async def test_what_still_runs_when_the_drain_time_is_over_ends_cleanly(pool, fake_upstream, env, tmp_path):
    """A stream ends with an SSE error event; a request still waiting for LiteLLM's answer gets
    503 SHUTTING_DOWN with Retry-After."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.stream_chunks, fake_upstream.chunk_gap = 100, 0.5  # a 50 s stream
    gateway = Gateway(tmp_path, env, {"drain_delay_seconds": 0.5, "drain_seconds": 2})
    async with aiohttp.ClientSession() as http:
        await gateway.start(http)
        try:
            async with http.post(gateway.url + "/v1/chat/completions", json={**CHAT, "stream": True},
                                 headers=bearer(seeded.key)) as r:
                assert r.status == 200
                head = await r.content.readany()
                fake_upstream.fault, fake_upstream.delay = "slow", 60.0  # from now on LiteLLM takes its time
                waiting = asyncio.create_task(http.post(gateway.url + "/v1/chat/completions", json=CHAT,
                                                        headers=bearer(seeded.key)))
                await eventually(lambda: len(fake_upstream.seen) == 2, timeout=10)
                gateway.terminate()
                started = time.monotonic()
                body = head + await asyncio.wait_for(r.content.read(), 30)
                elapsed = time.monotonic() - started
            parts = sse_events(body)
            assert orjson.loads(parts[-1]) == {
                "error": {
                    "message": "This gateway instance is shutting down. Please try again.",
                    "type": "service_unavailable_error",
                    "param": None,
                    "code": "SHUTTING_DOWN",
                }
            }
            assert all(orjson.loads(p)["object"] == "chat.completion.chunk" for p in parts[:-1])
            assert 1.5 <= elapsed < 2 + 10, elapsed  # at drain_seconds, not before the delay ended

            answer = await asyncio.wait_for(waiting, 30)
            assert answer.status == 503 and answer.headers["Retry-After"] == "1"
            assert await answer.json() == {
                "error": {
                    "message": "This gateway instance is shutting down. Please try again.",
                    "type": "service_unavailable_error",
                    "param": None,
                    "code": "SHUTTING_DOWN",
                }
            }
            answer.release()
            assert await gateway.wait(timeout=30) in (0, -signal.SIGTERM)
        finally:
            await gateway.stop()


async def test_two_instances_one_stopped_mid_stream_cut_no_stream_and_fail_no_request(pool, fake_upstream, env, tmp_path):
    """20 paced streams over two instances, SIGTERM to one of them mid-stream, and a third client
    sending all along through a balancer that routes by /health/ready (probed every 0.2 s, as a
    load balancer or Kubernetes would): every stream ends with [DONE], every request is served."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.stream_chunks, fake_upstream.chunk_gap = 12, 0.5  # each stream takes 6 s
    gateways = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        gateways.append(Gateway(tmp_path / name, env, {"drain_delay_seconds": 2, "drain_seconds": 60}))
    stopping, staying = gateways
    ready = {gw.url: True for gw in gateways}
    first_chunks = 0
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for gw in gateways:
            await gw.start(http)
        try:
            async def balancer_probe() -> None:
                while not done.is_set():
                    for gw in gateways:
                        answer = await ready_status(gw.url)
                        ready[gw.url] = answer is not None and answer[0] == 200
                    await asyncio.sleep(0.2)  # the probe period, not a synchronisation

            async def third_client() -> list[int]:
                statuses = []
                turn = 0
                while not done.is_set():
                    candidates = [gw.url for gw in gateways if ready[gw.url]]
                    turn += 1
                    statuses.append(await new_connection_status(candidates[turn % len(candidates)], seeded.key))
                return statuses

            async def stream(url: str) -> bytes:
                nonlocal first_chunks
                async with http.post(url + "/v1/chat/completions", json={**CHAT, "stream": True},
                                     headers=bearer(seeded.key)) as r:
                    assert r.status == 200
                    head = await r.content.readany()
                    first_chunks += 1
                    return head + await r.content.read()

            probe = asyncio.create_task(balancer_probe())
            client = asyncio.create_task(third_client())
            streams = [asyncio.create_task(stream(gateways[i % 2].url)) for i in range(20)]
            await eventually(lambda: first_chunks == 20, timeout=20)
            stopping.terminate()
            bodies = await asyncio.wait_for(asyncio.gather(*streams), 60)
            assert await stopping.wait(timeout=30) in (0, -signal.SIGTERM)
            done.set()
            statuses = await client
            await probe
        finally:
            done.set()
            for gw in gateways:
                await gw.stop()
    for body in bodies:
        assert sse_events(body)[-1] == b"[DONE]"
        assert not any(b'"error"' in e for e in sse_events(body))
    assert len(statuses) >= 10 and set(statuses) == {200}, statuses
    assert "draining; readiness is 503" in stopping.log.read_text()
