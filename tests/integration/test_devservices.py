"""The throwaway Postgres and Redis servers: they answer, survive a SIGKILL + restart on the same
port with their data, and leave no process behind. (LiteLLM is covered by the e2e tests.)
The local OIDC provider binds its own port, says its issuer, and restarts on it."""

import asyncio
import json
import os
import re
import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from gateway.dev.services import Service, restart, start_oidc_provider, start_postgres, start_redis

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_workdir():
    # Not tmp_path: as root, Postgres runs as the `postgres` user, which cannot traverse
    # pytest's /tmp/pytest-of-root (mode 0700); a fresh directory right under /tmp it can.
    path = Path(tempfile.mkdtemp(prefix="test-devservices-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pg_fetch(url: str, sql: str):
    async def fetch():
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def redis_ping(service: Service) -> bytes:
    with socket.create_connection(("127.0.0.1", service.port), timeout=2) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64)


def assert_gone(service: Service) -> None:
    assert service.process.returncode is not None
    with pytest.raises(ProcessLookupError):  # no member of its process group is left either
        os.killpg(service.process.pid, 0)


def test_postgres_and_redis_answer_survive_a_kill_and_stop(pg_workdir, tmp_path):
    postgres = start_postgres(pg_workdir)
    redis = start_redis(tmp_path / "redis")
    try:
        assert postgres.workdir == pg_workdir
        assert postgres.url == f"postgresql://postgres@127.0.0.1:{postgres.port}/maas"
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert pg_fetch(postgres.url, "SELECT current_database()") == "maas"
        assert redis_ping(redis) == b"+PONG\r\n"

        redis.kill()
        assert redis.process.returncode == -9
        with pytest.raises(ConnectionRefusedError):
            redis_ping(redis)
        redis = restart(redis)
        assert redis.url.endswith(f":{redis.port}/0") and redis.workdir == tmp_path / "redis"
        assert redis_ping(redis) == b"+PONG\r\n"

        # synchronous_commit=off: a commit younger than ~3 wal_writer_delays would be lost by a
        # SIGKILL, so make it durable first; the point here is the restart, not that setting.
        pg_fetch(postgres.url, "CREATE TABLE kept AS SELECT 42 AS answer")
        pg_fetch(postgres.url, "CHECKPOINT")
        old_url = postgres.url
        postgres.kill()
        assert_gone(postgres)
        postgres = restart(postgres)
        assert postgres.url == old_url
        assert pg_fetch(postgres.url, "SELECT answer FROM kept") == 42
    finally:
        postgres.stop()
        redis.stop()
    assert_gone(postgres)
    assert_gone(redis)
    postgres.stop()  # idempotent
    redis.kill()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands Postgres to the postgres user")
def test_postgres_as_root_moves_out_of_a_workdir_the_postgres_user_cannot_reach(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    postgres = start_postgres(locked / "pg")
    try:
        assert postgres.workdir.parent == Path("/tmp")
        assert pg_fetch(postgres.url, "SELECT current_database()") == "maas"
    finally:
        postgres.stop()
        shutil.rmtree(postgres.workdir)
    assert_gone(postgres)


def discovery(issuer: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(issuer + "/.well-known/openid-configuration", timeout=5) as response:
        return json.loads(response.read())


def test_the_oidc_provider_binds_its_own_port_and_restarts_on_it(tmp_path):
    provider = start_oidc_provider(tmp_path, [], [])
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", provider.url) and provider.port != 0
        assert discovery(provider.url)["issuer"] == provider.url
        # Each start step is logged with its time since node started (where a slow start stopped).
        steps = re.findall(r"^\d+ ms: (modules loaded|listening at|signing key made|oidc provider ready at)",
                           (tmp_path / "oidc.log").read_text(), re.M)
        assert steps == ["modules loaded", "listening at", "signing key made", "oidc provider ready at"]
        provider = restart(provider)  # the same issuer: clients and tokens keep naming it
        assert discovery(provider.url)["issuer"] == provider.url
        assert "end_session_endpoint" in discovery(provider.url)
    finally:
        provider.stop()
    assert_gone(provider)
    # A port already taken: node cannot listen, and the start says so at once (no retry on a given port).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(RuntimeError, match=r"(?s)exited with status 1.*EADDRINUSE"):
            start_oidc_provider(tmp_path / "taken", [], [], port=taken.getsockname()[1])


def test_an_oidc_provider_without_end_session(tmp_path):
    provider = start_oidc_provider(tmp_path, [], [], end_session=False)
    try:
        assert "end_session_endpoint" not in discovery(provider.url)
    finally:
        provider.stop()
