"""Slow clients, the concurrency bound and the admin listener, on the gateway served by uvicorn."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time

import aiohttp
import orjson
import pytest

from gateway.config import AdminConfig
from gateway.dev.services import free_port
from tests.support import bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

TIMEOUT = 0.5  # each read deadline in these tests
CHAT = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def _error(message: str, type_: str, code: str) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


NOT_FOUND = _error("This route does not exist on this gateway.", "not_found_error", "ROUTE_NOT_FOUND")


@pytest.fixture
async def slow_reads_gateway(pool, redis_url, postgres_url, fake_upstream):
    config = make_config(postgres_url, redis_url, fake_upstream.url, server={
        "header_read_timeout_seconds": TIMEOUT, "body_read_timeout_seconds": TIMEOUT, "keep_alive_timeout_seconds": TIMEOUT,
    })
    async with running_gateway(config) as gw:
        yield gw


async def _connect(gw) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = gw.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    async with asyncio.timeout(20 * TIMEOUT + 5):
        data = await reader.read()
    return data, time.monotonic() - started


def _response(data: bytes) -> tuple[int, dict, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, orjson.loads(body)


async def test_a_connection_that_sends_nothing_is_closed(slow_reads_gateway):
    reader, writer = await _connect(slow_reads_gateway)
    data, elapsed = await _until_closed(reader)
    writer.close()
    assert data == b"" and elapsed >= TIMEOUT * 0.9


async def test_headers_that_stop_coming_close_the_connection(slow_reads_gateway):
    reader, writer = await _connect(slow_reads_gateway)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: app")
    data, elapsed = await _until_closed(reader)
    writer.close()
    assert data == b"" and elapsed >= TIMEOUT * 0.9


async def test_a_body_that_stops_coming_gets_408_and_the_connection_closed(slow_reads_gateway, pool):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    reader, writer = await _connect(slow_reads_gateway)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + seeded.key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(CHAT) + CHAT[:10]
    )
    data, elapsed = await _until_closed(reader)
    writer.close()
    status, headers, body = _response(data)
    assert (status, headers["content-type"], body) == (408, "application/json", _error(
        "The request was not received in time. (the body must arrive within 0.5 s of the headers)",
        "invalid_request_error", "REQUEST_TIMEOUT"))
    assert re.fullmatch(r"[0-9a-f]{24}", headers["x-request-id"])  # one the gateway made: the client sent none
    assert elapsed >= TIMEOUT * 0.9


async def test_headers_over_64_kib_get_431(slow_reads_gateway):
    reader, writer = await _connect(slow_reads_gateway)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n" + b"X-Filler: " + b"a" * 70_000 + b"\r\n")
    data, _ = await _until_closed(reader)
    writer.close()
    status, _, body = _response(data)
    assert (status, body) == (431, _error(
        "The request could not be understood. (request line and headers over 65536 bytes)", "invalid_request_error", "INVALID_REQUEST"))


@pytest.mark.parametrize("body", [b"", CHAT], ids=["head only", "with a body"])
async def test_a_whole_head_over_64_kib_in_one_write_gets_431_with_the_request_id(slow_reads_gateway, body):
    """The head ends within the read that takes it over the limit: refused all the same, before the app."""
    reader, writer = await _connect(slow_reads_gateway)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Request-Id: trace-431\r\nX-Filler: " + b"a" * 70_000
                 + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data, _ = await _until_closed(reader)
    writer.close()
    status, headers, answer = _response(data)
    assert (status, headers["x-request-id"], answer) == (431, "trace-431", _error(
        "The request could not be understood. (request line and headers over 65536 bytes)", "invalid_request_error", "INVALID_REQUEST"))


async def test_a_whole_request_in_slow_pieces_within_the_deadlines_is_served(slow_reads_gateway, pool):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    reader, writer = await _connect(slow_reads_gateway)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Authorization: Bearer " + seeded.key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(CHAT))
    for piece in (head[:20], head[20:], CHAT[:10], CHAT[10:]):
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(TIMEOUT / 5)  # a slow client's pace, not a synchronisation
    data, _ = await _until_closed(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 ")


async def test_an_idle_keep_alive_connection_is_closed(slow_reads_gateway):
    reader, writer = await _connect(slow_reads_gateway)
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    data, elapsed = await _until_closed(reader)  # the rest of the answer, then nothing until the close
    writer.close()
    assert elapsed >= TIMEOUT * 0.5


async def test_requests_over_the_concurrency_bound_get_503_server_busy(pool, redis_url, postgres_url, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault, fake_upstream.delay = "slow", 30
    config = make_config(postgres_url, redis_url, fake_upstream.url, server={"max_concurrency": 2})
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:

        async def chat() -> int:
            async with http.post(gw.url + "/v1/chat/completions", data=CHAT, headers={**bearer(seeded.key), "Content-Type": "application/json"}) as r:
                return r.status

        held = [asyncio.create_task(chat()) for _ in range(2)]
        await eventually(lambda: len(fake_upstream.seen) == 2, timeout=10)
        async with http.post(gw.url + "/v1/chat/completions", data=CHAT, headers={**bearer(seeded.key), "Content-Type": "application/json"}) as r:
            assert (r.status, r.headers["Retry-After"], await r.json()) == (503, "1", _error(
                "The gateway is serving as many requests as it can. Please try again in a moment.",
                "service_unavailable_error", "SERVER_BUSY"))
            assert r.headers["x-request-id"]
        async with http.get(gw.url + "/health/live") as r:
            assert r.status == 200  # probes are not turned away
        fake_upstream.released.set()
        assert await asyncio.gather(*held) == [200, 200]
        async with http.post(gw.url + "/v1/chat/completions", data=CHAT, headers={**bearer(seeded.key), "Content-Type": "application/json"}) as r:
            assert r.status == 200


ADMIN_TOKEN = "admin-token-listeners"


async def test_the_admin_port_serves_the_operators_paths_and_the_public_port_does_not(
    pool, redis_url, postgres_url, fake_upstream
):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    admin_port = free_port()
    config = make_config(postgres_url, redis_url, fake_upstream.url, server={"admin_port": admin_port})
    config = dataclasses.replace(config, admin=AdminConfig(token=ADMIN_TOKEN))
    async with running_gateway(config) as gw, aiohttp.ClientSession() as http:
        public, admin = gw.url, f"http://127.0.0.1:{admin_port}"
        token = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        async def get(url: str, **kwargs) -> tuple[int, object]:
            async with http.get(url, **kwargs) as r:
                return r.status, (await r.json() if r.content_type == "application/json" else await r.text())

        for path in ("/admin/v1/models", "/metrics", "/health/integration", "/admin/v1/openapi.json"):
            assert await get(public + path, headers=token) == (404, NOT_FOUND), path
        assert (await get(public + "/health/live"))[0] == 200
        assert (await get(public + "/health/ready"))[0] == 200
        async with http.post(public + "/v1/chat/completions", data=CHAT, headers={**bearer(seeded.key), "Content-Type": "application/json"}) as r:
            assert r.status == 200

        assert (await get(admin + "/admin/v1/models", headers=token))[0] == 200
        status, text = await get(admin + "/metrics")
        assert status == 200 and "maas_gateway_requests_total" in text
        assert (await get(admin + "/health/integration"))[0] == 200
        assert (await get(admin + "/health/live"))[0] == 200
        async with http.post(admin + "/v1/chat/completions", data=CHAT, headers={**bearer(seeded.key), "Content-Type": "application/json"}) as r:
            assert (r.status, await r.json()) == (404, NOT_FOUND)
        assert await get(admin + "/v1/models", headers=bearer(seeded.key)) == (404, NOT_FOUND)
