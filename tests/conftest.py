"""Session services: a real Postgres and Redis (throwaway, free ports) and the fake upstream.

DATABASE_URL / REDIS_URL from the environment are used when set (as CI may); else
servers are started from the machine's binaries (gateway/dev/services.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator, Iterator

import asyncpg
import pytest

from gateway.store import db

from gateway.dev import services as devservices
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="maas-tests-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_service(services_dir: Path) -> Iterator[devservices.Service | None]:
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    service = devservices.start_postgres(services_dir / "pg")
    yield service
    service.stop()
    shutil.rmtree(service.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_service: devservices.Service | None) -> str:
    return os.environ.get("DATABASE_URL") or postgres_service.url  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def redis_service(services_dir: Path) -> Iterator[devservices.Service | None]:
    if os.environ.get("REDIS_URL"):
        yield None
        return
    service = devservices.start_redis(services_dir / "redis")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_url(redis_service: devservices.Service | None) -> str:
    return os.environ.get("REDIS_URL") or redis_service.url  # type: ignore[union-attr]


@pytest.fixture(scope="session")
async def pool(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    await db.migrate_url(postgres_url)
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def fake_upstream_server() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> FakeUpstream:
    fake_upstream_server.reset()
    return fake_upstream_server
