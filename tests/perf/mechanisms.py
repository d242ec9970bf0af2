"""A request's worth of one hot-path mechanism, hand-built or standard, counted by valgrind (the
limiter's: timed).

    python -m tests.perf.mechanisms [--repeat 4000] [--variants a,b,...] [--rounds 5]

Issue 15: a hand-built mechanism stays only where it pays >= 3% of the gateway's cost per
request. Each variant runs in a child under `valgrind --tool=cachegrind`, once doing
`--repeat` requests' worth of the mechanism and once none; the difference divided by the
repeats is its cost per request, with nothing else of the gateway around it (so none of the
run-to-run modes of `tests.perf.instructions`). What one request does:

    timers   the deadline on LiteLLM's response headers and the disconnect watch's start,
             both set and disarmed: the Ticker's (gateway/serving/ticker.py) against
             asyncio.timeout() and loop.call_later() (each repeat also makes a task and
             awaits sleep(0), the same in both)
    metrics  a plain request's seven updates (L1 hit, allow, upstream and request duration,
             prompt and completion tokens, the request count): the tally (gateway/ops/
             metrics.py, folded every 500 requests) against prometheus_client's children,
             `.labels()` per call and with every label set resolved once (functools.cache)
    log      one access line, written to /dev/null: the batch (gateway/ops/accesslog.py)
             against a `logging` record through gateway/ops/logs.py's JsonFormatter
    limiter  a request with rpm and tpm limits (bench.py's limited key), 64 at a time, on a real
             Redis started here (CPU 0): Limiter.checks, admit and finish, its two script calls
             carried by gateway/limits/pipelining.py (coalesced, written as RESP: limiter-resp),
             by the same coalescing through redis-py's Pipeline (limiter-pipeline), or each
             call a redis-py Script call of its own, the settle in a task (limiter-script); and
             limiter-resp with plan() run for every request, as the checks kept per key, model
             and minute spare it (limiter-replanned).
             These are TIMED, not counted: CPU time of this process on CPU 1, rounds alternating
             the variants, median of the rounds. Under valgrind the client runs ~50x slower than
             Redis answers, so every read finds its answer waiting: the counts (347k, 643k,
             298k) ranked the variants against their native cost (39, 67-78, 160-187 us).

docs/performance.md, "Hand-built mechanisms, measured", has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.perf.instructions import counted, under_valgrind

VARIANTS = ("timers-ticker", "timers-asyncio", "metrics-tally", "metrics-children", "metrics-children-cached",
            "log-batch", "log-logging", "limiter-resp", "limiter-pipeline", "limiter-script", "limiter-replanned")
REDIS_ENV = "MECHANISMS_REDIS_URL"  # the limiter variants' Redis, started by main()
LIMITER_WARMUP = 640  # requests before the timed ones (and all of the empty run)
LIMITER_REPEAT = 6400  # requests timed per run
FIELDS = {"request_id": "0123456789abcdef0123456789abcdef", "route": "/v1/chat/completions", "key_prefix": "sk-test",
          "user_id": "user-0123456789ab", "decision": "allow", "upstream_ms": 1.234, "model": "gpt-4o-mini",
          "status": 200, "code": None, "duration_ms": 2.345}
ROUTE = ("/v1/chat/completions",)
MODEL = "gpt-4o-mini"


async def timers(variant: str, repeat: int) -> None:
    from gateway.serving.disconnect import WATCH_AFTER_SECONDS, DisconnectWatcher
    from gateway.serving.ticker import Ticker
    from gateway.serving.upstream import _Deadline

    loop = asyncio.get_running_loop()
    ticker = Ticker(loop)

    async def ticker_request() -> None:
        deadline = _Deadline(ticker, 600)
        watch = DisconnectWatcher(ticker, None)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        deadline.stop(cancelled=False)
        watch.stop()

    async def asyncio_request() -> None:
        watch = loop.call_later(WATCH_AFTER_SECONDS, print)
        async with asyncio.timeout(600):
            await asyncio.sleep(0)
        watch.cancel()

    one = ticker_request if variant == "timers-ticker" else asyncio_request
    for _ in range(repeat):
        await loop.create_task(one())
    ticker.close()


def metrics(variant: str, repeat: int) -> None:
    from gateway.ops import metrics as m

    if variant == "metrics-tally":
        tally = m.TALLY
        hit, allow = tally.cell(m.KEY_CACHE_LOOKUPS, ("l1", "hit")), tally.cell(m.AUTH_DECISIONS, ("allow", "ok"))
        for index in range(repeat):
            hit[0] += 1
            allow[0] += 1
            tally.observe(m.UPSTREAM_DURATION, ROUTE, 0.0012)
            tally.inc(m.TOKENS, (MODEL, "prompt"), 12)
            tally.inc(m.TOKENS, (MODEL, "completion"), 9)
            tally.inc(m.REQUESTS, (ROUTE[0], MODEL, str(200), ""))
            tally.observe(m.REQUEST_DURATION, ROUTE, 0.0023)
            if index % 500 == 0:  # a fold a second at 500 requests a second
                tally.fold()
        tally.fold()
        return
    hit, allow = m.KEY_CACHE_LOOKUPS.labels("l1", "hit"), m.AUTH_DECISIONS.labels("allow", "ok")
    if variant == "metrics-children-cached":
        upstream, tokens, requests, duration = (functools.cache(metric.labels) for metric in (
            m.UPSTREAM_DURATION, m.TOKENS, m.REQUESTS, m.REQUEST_DURATION))
    else:
        upstream, tokens, requests, duration = (metric.labels for metric in (
            m.UPSTREAM_DURATION, m.TOKENS, m.REQUESTS, m.REQUEST_DURATION))
    for _ in range(repeat):
        hit.inc()
        allow.inc()
        upstream(*ROUTE).observe(0.0012)
        tokens(MODEL, "prompt").inc(12)
        tokens(MODEL, "completion").inc(9)
        requests(ROUTE[0], MODEL, str(200), "").inc()
        duration(*ROUTE).observe(0.0023)


def log(variant: str, repeat: int) -> None:
    from gateway.ops import logs
    from gateway.ops.accesslog import AccessLog

    logs.configure("info")
    devnull = open(os.devnull, "w")  # noqa: SIM115: the child's, to its end
    if variant == "log-batch":
        batch = AccessLog(write=devnull.write)
        for _ in range(repeat):
            batch.record(dict(FIELDS))
        batch.flush()
        return
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(devnull)
    access = logging.getLogger("maas_gateway.access")
    for _ in range(repeat):
        access.info("request", extra={"fields": dict(FIELDS)})


class PerCallScripts:
    """The limiter's traffic as before gateway/limits/pipelining.py: each call a redis-py Script call
    (a pooled connection each), a settle in a task of its own."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Task] = set()

    def call(self, script, keys: list[str], args: list[str]):
        return script(keys=keys, args=args)

    def send(self, script, keys: list[str], args: list[str], failed) -> None:
        task = asyncio.get_running_loop().create_task(script(keys=keys, args=args))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def drain(self) -> None:
        while self.pending:
            await asyncio.gather(*self.pending)


class Forgetful(dict):
    """A Limiter's kept plans that keep nothing: plan() for every request."""

    def __setitem__(self, key, value) -> None:
        pass


def redis_py_pipeline():
    """ScriptPipeline whose pipelines are redis-py's (each argument through its Encoder, a deadline per answer)."""
    from gateway.limits.pipelining import ScriptPipeline

    class RedisPyPipeline(ScriptPipeline):
        async def _pipeline(self, batch):
            pipe = self._redis.pipeline(transaction=False)
            sent = set()
            for call in batch:  # as ScriptPipeline: each script's first call an EVAL
                command = ("EVALSHA", call.script.sha) if call.script.sha in sent else ("EVAL", call.script.script)
                sent.add(call.script.sha)
                pipe.execute_command(*command, len(call.keys), *call.keys, *call.args)
            return await pipe.execute(raise_on_error=False)

    return RedisPyPipeline


async def limiter(variant: str, repeat: int) -> None:
    import time

    import redis.asyncio as aioredis

    from gateway.config import LimitsConfig
    from gateway.limits.limiter import Limiter
    from policies.limits import Limits
    from policies.records import KeyRecord, Mode
    from tests.perf.bench import HIGH_LIMIT

    # the pool as gateway/app.py makes it; the per-call variant needs more than its 100 connections at 64 at a time
    redis = aioredis.from_url(os.environ[REDIS_ENV], socket_timeout=0.5, socket_connect_timeout=0.5,
                              max_connections=10_000 if variant == "limiter-script" else None)
    limits = Limiter(LimitsConfig(), redis, 600.0)
    if variant == "limiter-script":
        limits._pipeline = PerCallScripts()  # type: ignore[assignment]
    elif variant == "limiter-pipeline":
        limits._pipeline = redis_py_pipeline()(redis)
    elif variant == "limiter-replanned":
        limits._plans = Forgetful()
    record = KeyRecord(key_id="mechanisms-key", user_id="mechanisms-user",
                       limits=Limits(rpm_limit=HIGH_LIMIT, tpm_limit=HIGH_LIMIT))

    async def client(count: int) -> None:
        for _ in range(count):
            now = time.time()
            meter = await limits.admit(record, MODEL, limits.checks(record, MODEL, now), now, Mode.ENFORCE)
            await asyncio.sleep(0)  # the answer
            meter.prompt_tokens, meter.completion_tokens = 12, 9
            limits.finish(meter)

    from gateway.ops.metrics import LIMITER_FALLBACKS

    for count in (LIMITER_WARMUP, repeat):  # the warm-up in both runs: connections, scripts loaded, first calls
        await asyncio.gather(*(client(count // 64) for _ in range(64)))
        await limits.settle()
    await redis.aclose()
    if LIMITER_FALLBACKS._value.get():
        raise RuntimeError(f"{variant}: requests were counted in-process, not in Redis")


async def child(variant: str, repeat: int) -> None:
    if variant.startswith("timers"):
        await timers(variant, repeat)
    elif variant.startswith("limiter"):
        await limiter(variant, repeat)
    elif variant.startswith("metrics"):
        metrics(variant, repeat)
    else:
        log(variant, repeat)


def count(variant: str, repeat: int) -> subprocess.Popen:
    return under_valgrind("tests.perf.mechanisms", "--child", variant, str(repeat))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        import uvloop

        uvloop.run(child(argv[1], int(argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=4000, help="requests' worth per counted run")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (the limiter variants)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None and not all(v.startswith("limiter") for v in args.variants.split(",")):
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    variants = args.variants.split(",")
    for variant in (v for v in variants if not v.startswith("limiter")):
        full, empty = count(variant, args.repeat), count(variant, 0)
        per_request = (counted(full) - counted(empty)) / args.repeat
        print(f"{variant:24} {per_request / 1000:6.1f}k instructions per request", flush=True)
    timed_variants = [v for v in variants if v.startswith("limiter")]
    if timed_variants:
        with redis_server() as server:
            os.environ[REDIS_ENV] = server.url
            for variant, rounds in timed(timed_variants, args.rounds, LIMITER_REPEAT).items():
                print(f"{variant:24} {statistics.median(rounds):6.1f} us per request (CPU; rounds: "
                      f"{', '.join(f'{r:.0f}' for r in rounds)})", flush=True)
    return 0


def timed(variants: list[str], rounds: int, repeat: int) -> dict[str, list[float]]:
    """CPU microseconds per request of each variant, on CPU 1: (a run of `repeat` - an empty run) / repeat,
    the variants taking turns in each round (A B C, C B A, ...)."""
    import time

    import uvloop

    from tests.perf.bench import PROXY_CPUS

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, PROXY_CPUS)
    results: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for index in range(rounds):
            for variant in variants if index % 2 == 0 else variants[::-1]:
                spent = []
                for count in (repeat, 0):
                    started = time.process_time()
                    uvloop.run(child(variant, count))
                    spent.append(time.process_time() - started)
                results[variant].append((spent[0] - spent[1]) / repeat * 1e6)
    finally:
        os.sched_setaffinity(0, before)
    return results


@contextlib.contextmanager
def redis_server():
    """A Redis on CPU 0 (the counted children run where they please: valgrind counts, not times)."""
    from gateway.dev import services as devservices
    from tests.perf.bench import LOAD_CPUS

    work = tempfile.mkdtemp(prefix="mechanisms-")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, LOAD_CPUS)
    try:
        server = devservices.start_redis(Path(work) / "redis")
    finally:
        os.sched_setaffinity(0, before)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
