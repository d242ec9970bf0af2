"""A request's worth of one hot-path mechanism, hand-built or standard, counted by valgrind.

    python -m tests.perf.mechanisms [--repeat 4000]

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

docs/performance.md, "Hand-built mechanisms, measured", has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import shutil
import subprocess
import sys

from tests.perf.instructions import counted, under_valgrind

VARIANTS = ("timers-ticker", "timers-asyncio", "metrics-tally", "metrics-children", "metrics-children-cached",
            "log-batch", "log-logging")
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


async def child(variant: str, repeat: int) -> None:
    if variant.startswith("timers"):
        await timers(variant, repeat)
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
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    for variant in args.variants.split(","):
        full, empty = count(variant, args.repeat), count(variant, 0)
        per_request = (counted(full) - counted(empty)) / args.repeat
        print(f"{variant:24} {per_request / 1000:6.1f}k instructions per request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
