"""The gateway's own cost per request, without a server or a load generator in the way.

    python -m tests.perf.inprocess [--rounds 10] [--requests 1000] [--limits]

Runs the gateway app (gateway.app, with its lifespan: Postgres, Redis, every feature on)
and the ceiling app (tests/perf/ceiling.py) in this one process, pinned to CPU 1, against
the fake upstream on CPU 0, and drives both with the same ASGI driver (64 concurrent
requests, the bench's plain and streamed bodies). They take turns, round by round; each
round reports this process's CPU time per request. The difference gateway - ceiling is
what the gateway's features cost; paired rounds keep the host's drifting speed out of it.
`make bench` is the measure of record; this is the quick loop for working on the hot path
(about a minute; attach py-spy to the printed pid for a profile without uvicorn and wrk).

With --limits the pair is the gateway against itself: limits off (the key as above) and limits
on (bench.py's second key, rpm and tpm limits of 10^9: counted on every request, never
refused), as `make bench`'s "gateway, limits on" row; the ratio printed is off/on CPU, the
throughput limits on would keep on a saturated core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator

from gateway.dev import services as devservices
from gateway.ops.accesslog import AccessLog
from gateway.dev.services import free_port
from tests.perf import bench

CONCURRENCY = 64


def http_scope(key: str | None, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"inprocess"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if key:
        headers.append((b"authorization", b"Bearer " + key.encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 50000), "scheme": "http", "method": "POST", "root_path": "", "path": bench.PATH,
            "raw_path": bench.PATH.encode(), "query_string": b"", "headers": headers}


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[None]:
    """The app's lifespan, as a server runs it: startup, then shutdown on the way out."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"startup failed: {message}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def drive(app: Any, key: str | None, body: bytes, requests: int) -> float:
    """CPU microseconds of this process per request, `requests` of them, CONCURRENCY at a time."""

    async def client(count: int) -> None:
        for _ in range(count):
            done = asyncio.Event()
            delivered = False

            async def receive() -> dict:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await done.wait()  # as uvicorn: a complete response reads as a disconnect
                return {"type": "http.disconnect"}

            statuses: list[int] = []

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                elif not message.get("more_body"):
                    done.set()

            await app(http_scope(key, body), receive, send)
            if statuses != [200]:
                raise RuntimeError(f"answered {statuses}")

    per_client = requests // CONCURRENCY
    started = time.process_time()
    await asyncio.gather(*(client(per_client) for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / (per_client * CONCURRENCY) * 1e6


@dataclass
class Services:
    """Postgres, Redis and the fast fake upstream, as the apps here need them."""

    database_url: str
    redis_url: str
    upstream_url: str
    key: str  # a seeded key with access to bench.MODEL
    limited_key: str = ""  # the same with rpm and tpm limits of bench.HIGH_LIMIT (the limiter counts it)


@contextlib.contextmanager
def started(settings: bench.Settings, prefix: str) -> Iterator[tuple[bench.Bench, Any, Any, Any, int]]:
    """Postgres and Redis (seeded as `settings` says) and the fast fake upstream, started on CPU 0
    (bench.LOAD_CPUS): (runner, postgres, redis, seed, upstream port); stopped on the way out, their
    directory removed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(work, 0o755)  # Postgres runs as its own user under this directory
    runner = bench.Bench(settings, work)
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, bench.LOAD_CPUS)  # what starts now inherits CPU 0
    postgres = devservices.start_postgres(work / "pg")
    redis = devservices.start_redis(work / "redis")
    try:
        seeded = asyncio.run(bench.seed(postgres.url, settings))
        port = free_port()
        upstream = runner.spawn("upstream", [sys.executable, "-m", "tests.perf.upstream", str(port)], bench.LOAD_CPUS)
        runner.wait_http(upstream, port, "GET", "/health/liveliness")
        os.sched_setaffinity(0, affinity)
        yield runner, postgres, redis, seeded, port
    finally:
        runner.stop_all()
        redis.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """Started on CPU 0 (bench.LOAD_CPUS), stopped on the way out."""
    settings = bench.Settings(keys=10, cold_keys=10, revocation_trials=1)
    with started(settings, "inprocess-") as (_, postgres, redis, seeded, port):
        yield Services(postgres.url, redis.url, f"http://127.0.0.1:{port}", seeded.key, seeded.limited_key)


def make_apps(services: Services) -> tuple[Any, Any]:
    """(gateway, ceiling): the gateway app as `serve` makes it (every feature on), and the ceiling."""
    os.environ.update(DATABASE_URL=services.database_url, REDIS_URL=services.redis_url,
                      LITELLM_URL=services.upstream_url, LITELLM_API_KEY=bench.SERVICE_KEY)
    from gateway.app import create_app
    from gateway.config import load_config
    from gateway.ops.logs import configure
    from tests.perf.ceiling import Ceiling

    config_path = Path(tempfile.mkdtemp(prefix="inprocess-")) / "config.yaml"
    config_path.write_text("litellm:\n  sync_users: false\n")
    config = load_config(str(config_path))
    configure(config.logging.level)
    return create_app(config), Ceiling(services.upstream_url)


def quiet_access_log(gateway: Any, **options: Any) -> None:
    """Access lines made as in service, then dropped rather than printed."""
    gateway.holder.state.access_log = AccessLog(write=lambda text: None, **options)


async def compare(services: Services, rounds: int, requests: int, limits: bool = False) -> None:
    gateway, ceiling = make_apps(services)
    async with serving(gateway), serving(ceiling):
        quiet_access_log(gateway)
        if limits:
            await rounds_of((gateway, services.key, "limits off"), (gateway, services.limited_key, "limits on"),
                            rounds, requests)
        else:
            await rounds_of((ceiling, None, "ceiling"), (gateway, services.key, "gateway"), rounds, requests)


async def rounds_of(base: tuple[Any, str | None, str], measured: tuple[Any, str | None, str], rounds: int,
                    requests: int) -> None:
    """`base` and `measured` (app, key, name) take turns, A B, B A, ...; medians of the pairs."""
    print(f"pid {os.getpid()} (CPU 1)", flush=True)
    (_, _, base_name), (_, _, measured_name) = base, measured
    for kind, body in (("plain", bench.PLAIN_BODY), ("stream", bench.STREAM_BODY)):
        for app, key, _ in (base, measured):  # warm both
            await drive(app, key, body, requests // 2)
        pairs = []
        for index in range(rounds):
            order = [base, measured] if index % 2 == 0 else [measured, base]
            results = {name: await drive(app, key, body, requests) for app, key, name in order}
            pairs.append((results[base_name], results[measured_name]))
        base_us = statistics.median(b for b, _ in pairs)
        measured_us = statistics.median(m for _, m in pairs)
        print(f"{kind:6}  {base_name} {base_us:4.0f} us  {measured_name} {measured_us:4.0f} us  "
              f"difference (median of pairs) {statistics.median(m - b for b, m in pairs):4.0f} us  "
              f"{base_name}/{measured_name} (median of pairs) {statistics.median(b / m for b, m in pairs):.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--limits", action="store_true", help="limits on against limits off, instead of the ceiling")
    args = parser.parse_args(argv)
    with services() as running:
        os.sched_setaffinity(0, bench.PROXY_CPUS)
        import uvloop

        uvloop.run(compare(running, args.rounds, args.requests, args.limits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
