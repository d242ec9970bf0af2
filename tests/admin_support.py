"""Fixtures and helpers for the admin API tests: the LiteLLM double, a gateway with an
admin token, an admin HTTP client, row counts. Test modules import the fixtures by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from typing import Any, AsyncIterator

import aiohttp
import pytest

from gateway.config import AdminConfig
from tests.fakes.litellm_management import FakeLiteLLM
from tests.support import MASTER_KEY, RunningGateway, make_config, running_gateway

ADMIN_TOKEN = "admin-token-" + uuid.uuid4().hex
TABLES = ("users", "models", "subscriptions", "api_keys", "api_key_models")


@pytest.fixture(scope="session")
async def litellm_double_server() -> AsyncIterator[FakeLiteLLM]:
    double = FakeLiteLLM(MASTER_KEY)
    await double.start()
    yield double
    await double.set_down(False)
    await double.stop()


@pytest.fixture
async def double(litellm_double_server: FakeLiteLLM) -> AsyncIterator[FakeLiteLLM]:
    litellm_double_server.reset()
    await litellm_double_server.set_down(False)
    yield litellm_double_server
    await litellm_double_server.set_down(False)


def admin_config(postgres_url: str, redis_url: str | None, litellm_url: str, *, token: str | None = ADMIN_TOKEN,
                 **sections: Any):
    """The test config: sync on against `litellm_url`, fast reconciler, short timeouts; admin token set."""
    litellm = {"sync_users": True, "sync_interval_seconds": 0.05, "timeout_ms": 400, **sections.pop("litellm", {})}
    breaker = {"reset_timeout_seconds": 0.05, **sections.pop("breaker", {})}
    config = make_config(postgres_url, redis_url, litellm_url, litellm=litellm, breaker=breaker, **sections)
    return dataclasses.replace(config, admin=AdminConfig(token=token))


@contextlib.asynccontextmanager
async def admin_gateway(postgres_url: str, redis_url: str | None, litellm_url: str, **kwargs: Any
                        ) -> AsyncIterator[RunningGateway]:
    async with running_gateway(admin_config(postgres_url, redis_url, litellm_url, **kwargs)) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def admin_client(token: str | None = ADMIN_TOKEN) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


@pytest.fixture
async def admin() -> AsyncIterator[aiohttp.ClientSession]:
    async with admin_client() as session:
        yield session


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def row_counts(pool: Any) -> dict[str, int]:
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def error(status_type: str, code: str, message: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": status_type, "param": param, "code": code}}
