"""Nothing but the allow-listed routes reaches LiteLLM, whatever the request line says.

Requests are written byte for byte on a raw socket: HTTP clients normalise paths
(dot segments, double slashes) and would hide exactly the tricks under test.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson
import pytest

from tests.support import make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

BYPASSES = [
    "/key/generate",
    "/v1/key/generate",
    "/key/update",
    "/key/delete",
    "/user/new",
    "/user/info?user_id=admin",
    "/model/new",
    "/model/info",
    "/spend/logs",
    "/global/spend",
    "/team/new",
    "/config/update",
    "/openai/v1/chat/completions",  # LiteLLM pass-through routes
    "/anthropic/v1/messages",
    "/vertex_ai/v1/projects/p/locations/l/publishers/google/models/gemini:generateContent",
    "/bedrock/model/m/invoke",
    "/v1/../key/generate",
    "/v1/chat/completions/../../key/generate",
    "/v1/%2e%2e/key/generate",
    "/v1/%2E%2E/key/generate",
    "/v1/chat/completions/%2e%2e/%2e%2e/key/generate",
    "/v1%2fchat%2fcompletions",
    "//v1/chat/completions",
    "/v1//chat/completions",
    "/v1/chat/completions/",
    "/V1/chat/completions",
    "/v1/chat/completions%00",
    "/v1/chat/completions;x=1",
    "/v1/models/../../key/generate",
    "/v1/models/%2e%2e/key/generate",
    "/openai/deployments/../../key/generate/chat/completions",
    "/openai/deployments/%2e%2e/chat/completions",
    "/admin/v1/../../key/generate",
    "/health/../key/generate",
    "/metrics/../key/generate",
]


async def raw_request(url: str, method: str, target: str, body: bytes, key: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.fixture(scope="module")
async def gateway(pool, redis_url, postgres_url, fake_upstream_server):
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream_server.url)) as gw:
        yield gw


@pytest.mark.parametrize("target", BYPASSES)
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_bypass_attempts_are_refused_and_never_forwarded(gateway, pool, fake_upstream, target, method):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [], "key_alias": "x", "user_id": "admin"})
    status, payload = await raw_request(gateway.url, method, target, body, seeded.key)
    assert status in (400, 404, 405), (target, status, payload)
    error = orjson.loads(payload)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] in ("ROUTE_NOT_FOUND", "METHOD_NOT_ALLOWED", "INVALID_REQUEST")
    assert fake_upstream.seen == []


async def test_a_real_route_on_the_same_raw_client_is_forwarded(gateway, pool, fake_upstream):
    """The control: the raw client above can reach the upstream when the path is allowed."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": []})
    status, _ = await raw_request(gateway.url, "POST", "/v1/chat/completions", body, seeded.key)
    assert status == 200
    assert fake_upstream.paths() == ["/v1/chat/completions"]
