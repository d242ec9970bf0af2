"""A rolling restart under load: three `maas-gateway serve` processes behind Debian's haproxy.

Clients send plain and streamed chat completions through haproxy all along, while the
instances are restarted one after another as a deploy does: SIGTERM, wait for the exit, a
new process on the same port, wait until haproxy routes to it again, next. No request
may fail: every plain answer is a 200 chat completion, every stream runs to [DONE].

The haproxy configuration is a real deployment's, with short timers:
- health checks GET /health/ready every 100 ms (fall 2, rise 2): a draining instance is
  out of the rotation within ~0.2 s, several times within its drain_delay_seconds (1.5),
  so no new request reaches it after its listener closes;
- `option http-server-close`: a new connection to the instance for each request (clients
  keep theirs to haproxy). A connection kept alive to an instance can be closed by it (idle
  for server.keep_alive_timeout_seconds) just as haproxy writes the next request on it, and
  haproxy does not resend a request once written; a fresh connection can only fail before
  anything is sent (refused), which `retries 3` with `option redispatch` sends to another
  instance. A connect on loopback or a LAN costs far less than an LLM answer. (Under this
  test's steady load no connection goes idle that long: it also passes with keep-alive.);
- `balance leastconn` (streams are long-lived) and no retry of a request once sent
  (haproxy's default `retry-on conn-failure`): a gateway failure is not hidden.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from dataclasses import dataclass

import aiohttp
import orjson
import pytest

from gateway.dev.services import free_port
from tests.processes import Gateway, Haproxy, gateway_env
from tests.support import bearer, eventually, seed_key, sse_events

pytestmark = pytest.mark.integration

INSTANCES = 3
CLIENTS = 12  # every third one streams
MAX_REQUESTS_PER_CLIENT = 1_000  # a bound in count besides the time (~20 answers a second per client)
ANSWER_DELAY = 0.05  # the fake LiteLLM's time to answer: paced clients, not a CPU hog
DRAIN_DELAY = 1.5
SERVER = {"drain_delay_seconds": DRAIN_DELAY, "drain_seconds": 15}
STREAM_CHUNKS, CHUNK_GAP = 20, 0.15  # a stream takes 3 s, longer than the drain delay
MIN_ANSWERS_PER_RESTART = 20
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

HAPROXY_CFG = """\
global
    maxconn 1024
    nbthread 1
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option http-server-close
    option redispatch 1
    retries 3
    timeout connect 1s
    timeout client 10m
    timeout server 10m
    timeout http-request 10s
    timeout http-keep-alive 60s
    timeout check 2s

frontend api
    bind 127.0.0.1:{port}
    default_backend gateways

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats

backend gateways
    balance leastconn
    option httpchk
    http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host haproxy
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
    default-server inter 100ms fall 2 rise 2
{servers}
"""


@dataclass(frozen=True)
class Outcome:
    kind: str  # "plain" | "stream"
    server: str | None  # haproxy's name of the instance that answered
    sent: float
    first: float | None  # a stream's first chunk (loop time)
    done: float
    ok: bool
    detail: str


async def ready(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url + "/health/ready") as r:
            return r.status == 200
    except aiohttp.ClientConnectionError:
        return False


def stream_complete(body: bytes) -> bool:
    parts = sse_events(body)
    if not parts or parts[-1] != b"[DONE]":
        return False
    chunks = [orjson.loads(p) for p in parts[:-1]]
    return [c.get("object") for c in chunks] == ["chat.completion.chunk"] * STREAM_CHUNKS


async def test_rolling_restart_of_three_instances_under_load_fails_no_request(pool, fake_upstream, postgres_url,
                                                                              redis_url, tmp_path):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.stream_chunks, fake_upstream.chunk_gap = STREAM_CHUNKS, CHUNK_GAP
    fake_upstream.fault, fake_upstream.delay = "slow", ANSWER_DELAY
    env = gateway_env(postgres_url, redis_url, fake_upstream.url)
    loop = asyncio.get_running_loop()

    names = [f"g{n}" for n in range(INSTANCES)]
    gateways: dict[str, Gateway] = {}
    for name in names:
        (tmp_path / name).mkdir()
        gateways[name] = Gateway(tmp_path / name, env, SERVER)
    port, stats_port = free_port(), free_port()
    servers = "\n".join(f"    server {name} 127.0.0.1:{gw.port} check" for name, gw in gateways.items())
    haproxy = Haproxy(tmp_path, HAPROXY_CFG.format(port=port, stats_port=stats_port, servers=servers), stats_port)
    balancer = f"http://127.0.0.1:{port}/v1/chat/completions"

    outcomes: list[Outcome] = []
    running: dict[object, tuple[str | None, float]] = {}  # streams past their first chunk: instance, when
    stop = asyncio.Event()
    started: list[Gateway] = []
    workers: list[asyncio.Task] = []

    async def plain(http: aiohttp.ClientSession) -> Outcome:
        sent = loop.time()
        try:
            async with http.post(balancer, json=CHAT, headers=bearer(seeded.key)) as r:
                body = await r.read()
                ok = r.status == 200 and orjson.loads(body).get("object") == "chat.completion"
                return Outcome("plain", r.headers.get("X-Served-By"), sent, None, loop.time(), ok,
                               f"{r.status} {body[:300]!r}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Outcome("plain", None, sent, None, loop.time(), False, repr(exc))

    async def stream(http: aiohttp.ClientSession) -> Outcome:
        sent, first, server = loop.time(), None, None
        try:
            async with http.post(balancer, json={**CHAT, "stream": True}, headers=bearer(seeded.key)) as r:
                server = r.headers.get("X-Served-By")
                head = await r.content.readany()
                first = loop.time()
                running[token := object()] = (server, first)
                try:
                    body = head + await r.content.read()
                finally:
                    del running[token]
                ok = r.status == 200 and stream_complete(body)
                return Outcome("stream", server, sent, first, loop.time(), ok, f"{r.status} {body[-300:]!r}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Outcome("stream", server, sent, first, loop.time(), False, repr(exc))

    async def client(http: aiohttp.ClientSession, worker: int) -> None:
        send = stream if worker % 3 == 0 else plain
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if stop.is_set():
                return
            outcomes.append(await send(http))

    def answered_by(name: str, after: float) -> int:
        return sum(1 for o in outcomes if o.ok and o.server == name and o.sent >= after)

    restarts = []  # (name, SIGTERM, haproxy saw it DOWN, old process exited, new one UP) in loop time
    test_started = loop.time()
    timeout = aiohttp.ClientTimeout(total=30)
    async with (aiohttp.ClientSession(timeout=timeout) as control,
                aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=CLIENTS)) as load):
        try:
            for gw in gateways.values():
                await gw.spawn()
                started.append(gw)
            for gw in gateways.values():  # ready before haproxy starts (it takes a server as UP at first)
                await eventually(lambda: ready(control, gw.url), timeout=60, interval=0.1)
            await haproxy.start()
            for name in names:
                await haproxy.wait_for(control, name, "UP", timeout=60)
            workers += [asyncio.create_task(client(load, w)) for w in range(CLIENTS)]
            await eventually(lambda: all(answered_by(name, test_started) >= 5 for name in names), timeout=20)

            for name in names:
                old = gateways[name]
                # a stream that has more than the drain delay to run: it outlives the listener
                await eventually(lambda: any(server == name and loop.time() - first < 1.0
                                             for server, first in running.values()), timeout=15)
                terminated = loop.time()
                old.terminate()
                await haproxy.wait_for(control, name, "DOWN", timeout=DRAIN_DELAY)  # out of rotation before the listener closes
                down = loop.time()
                assert await old.wait(timeout=30) in (0, -signal.SIGTERM)
                exited = loop.time()
                (tmp_path / f"{name}-new").mkdir()
                gateways[name] = new = Gateway(tmp_path / f"{name}-new", env, SERVER, port=old.port)
                await new.spawn()
                started.append(new)
                await haproxy.wait_for(control, name, "UP", timeout=30)
                restarts.append((name, terminated, down, exited, loop.time()))

            # every new instance takes its share before the load stops
            await eventually(lambda: all(answered_by(name, up) >= 5 for name, *_, up in restarts), timeout=20)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), 30)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await haproxy.stop()
            for gw in started:
                await gw.stop()
    elapsed = loop.time() - test_started

    failures = [o for o in outcomes if not o.ok]
    assert not failures, f"{len(failures)} of {len(outcomes)} failed; first ones: {failures[:5]}"
    assert [name for name, *_ in restarts] == names  # every instance restarted
    for name, terminated, down, exited, up in restarts:
        # streams that were running on the instance when it got SIGTERM ran to [DONE] on it
        drained = [o for o in outcomes if o.kind == "stream" and o.server == name and o.first < terminated < o.done]
        assert any(o.done > terminated + DRAIN_DELAY for o in drained), f"{name}: no stream outlived the drain delay"
        # once haproxy had it DOWN, nothing new reached it; the others served meanwhile
        assert not [o for o in outcomes if o.server == name and down < o.sent < exited]
        during = [o for o in outcomes if terminated <= o.sent and o.done <= up]
        assert len(during) >= MIN_ANSWERS_PER_RESTART, (name, len(during))
        print(f"{name}: DOWN in haproxy {down - terminated:.2f} s after SIGTERM, exited after {exited - terminated:.2f} s, "
              f"new one UP after {up - exited:.2f} s more; {len(during)} answers meanwhile, {len(drained)} streams drained")
    counts = Counter(o.kind for o in outcomes)
    print(f"rolling restart: {elapsed:.1f} s, {counts['plain']} plain answers, {counts['stream']} streams, none failed")
