"""Test helpers: run the gateway the way users do (uvicorn on a loopback port), seed data.

Seeding writes rows directly with SQL so the proxy's tests do not depend on the
admin API; the admin API has tests of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
import uvicorn

from gateway.serving import listeners
from gateway.app import GatewayApp, create_app
from gateway.config import Config, parse_config
from gateway.dev.services import free_port
from gateway.store.keys import hash_key

MASTER_KEY = "sk-master-test-0000"


def make_config(database_url: str, redis_url: str | None, litellm_url: str, **sections: Any) -> Config:
    """A Config as an operator would write it, plus the environment a test gives."""
    environ = {"DATABASE_URL": database_url, "LITELLM_URL": litellm_url, "LITELLM_API_KEY": MASTER_KEY}
    if redis_url:
        environ["REDIS_URL"] = redis_url
    # Every test's requests come from 127.0.0.1 and share one Redis: the failed-authentication
    # limit is out of the way unless a test sets its own (tests/integration/test_bounded_cost.py).
    data: dict[str, Any] = {"health": {"interval_seconds": 0.5}, "litellm": {"sync_users": False},
                            "security": {"failed_auth_limit": 1_000_000}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values) if isinstance(values, dict) else data.__setitem__(name, values)
    return parse_config(data, environ)


@dataclass
class RunningGateway:
    url: str
    app: GatewayApp
    server: uvicorn.Server

    @property
    def state(self):
        return self.app.holder.state


@contextlib.asynccontextmanager
async def running_gateway(config: Config, port: int | None = None) -> AsyncIterator[RunningGateway]:
    """Serve the gateway with uvicorn on a free port (or `port`) of this event loop, lifespan included."""
    app = create_app(config)
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False,
                       loop="none", http=listeners.protocol(config.server), timeout_graceful_shutdown=2,
                       timeout_keep_alive=config.server.keep_alive_timeout_seconds,  # as `serve` runs it
                       proxy_headers=False)  # X-Forwarded-For is the gateway's to judge, as in `serve`
    )
    sockets = [listeners.bind("127.0.0.1", port)]
    if config.server.admin_port is not None:
        sockets.append(listeners.bind("127.0.0.1", config.server.admin_port))
    task = asyncio.create_task(server._serve(sockets))  # _serve: no signal handlers taken from pytest
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("gateway exited during startup")
            await asyncio.sleep(0.01)  # readiness poll of a server we just started
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        await task


@dataclass
class Seeded:
    key: str
    key_id: str
    user_id: str


async def seed_key(
    pool: Any,
    *,
    models: list[str],
    subscriptions: dict[str, str] | None = None,
    user_active: bool = True,
    key_active: bool = True,
    expires_in: float | None = None,
) -> Seeded:
    """A user with subscriptions (model -> status; default: every listed model active) and one key."""
    user_id = f"user-{uuid.uuid4().hex[:12]}"
    key = "sk-test-" + secrets.token_urlsafe(24)
    key_id = str(uuid.uuid4())
    if subscriptions is None:
        subscriptions = {m: "active" for m in models if not m.endswith("*")}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO users (id, username, email, is_active, sync_status) VALUES ($1, $1, $1 || '@example.com', $2, 'synced')",
            user_id, user_active,
        )
        for model, status in subscriptions.items():
            await conn.execute("INSERT INTO models (id) VALUES ($1) ON CONFLICT DO NOTHING", model)
            await conn.execute(
                "INSERT INTO subscriptions (id, user_id, model_id, status) VALUES ($1, $2, $3, $4)",
                str(uuid.uuid4()), user_id, model, status,
            )
        await conn.execute(
            """INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, is_active, expires_at)
               VALUES ($1, $2, 'test', $3, $4, $5, CASE WHEN $6::float8 IS NULL THEN NULL
                                                       ELSE now() + make_interval(secs => $6::float8) END)""",
            key_id, user_id, hash_key(key), key[:7], key_active, expires_in,
        )
        for model in models:
            await conn.execute("INSERT INTO api_key_models (api_key_id, model_id) VALUES ($1, $2)", key_id, model)
    return Seeded(key, key_id, user_id)


async def wait_until_serving(http: Any, url: str, timeout: float) -> None:
    """Poll GET {url}/health/live until a gateway we just started answers 200."""

    async def alive() -> bool:
        try:
            async with http.get(url + "/health/live") as r:
                return r.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await eventually(alive, timeout=timeout, interval=0.1)


def sse_events(body: bytes) -> list[bytes]:
    """The data of each event of an SSE body, in order (b"[DONE]" included)."""
    return [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def eventually(predicate, timeout: float, interval: float = 0.01) -> float:
    """Poll `predicate` (sync or async) until true; returns the seconds it took. Fails after `timeout`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return loop.time() - started
        if loop.time() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def raw_post(url: str, target: str, headers: list[tuple[str, str]] | list[tuple[bytes, bytes]],
                   body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST written byte for byte on a socket: the headers exactly as given (repeats, odd case and
    bytes, none added but Host, Content-Length and Connection: close), which HTTP clients normalise.
    Returns (status, headers in lowercase, body); the answer must not be chunked."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {target} HTTP/1.1".encode(), f"Host: {host}:{port}".encode()]
    for name, value in headers:
        name = name.encode("latin-1") if isinstance(name, str) else name
        value = value.encode("latin-1") if isinstance(value, str) else value
        head.append(name + b": " + value)
    head += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    raw_headers, _, payload = rest.partition(b"\r\n\r\n")
    answer_headers = {}
    for line in raw_headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        answer_headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(status_line.split()[1]), answer_headers, payload
