"""Instructions per request, gateway and ceiling, counted by valgrind: the same number every run.

    python -m tests.perf.instructions [--requests 1280] [--kinds plain,stream]

This host's speed drifts (docs/performance.md), so timings need paired rounds and still
move by ±0.05 of the ratio; instruction counts do not move by more than ~0.5%. Each app
runs in a child process under `valgrind --tool=cachegrind` (Debian package `valgrind`),
with its lifespan and every feature on, driven in-process as tests/perf/inprocess.py
drives it: once with `--requests` requests after a warm-up, once with none; the
difference divided by the requests is the cost of one request, start-up and shutdown
left out. Time-based behaviour is stretched by SLOWDOWN, as valgrind runs code that much
slower: the disconnect-watch start, the metrics fold, the access-log flush and the
ticker's resolution happen per request as often as they do natively.

Instructions are not time (cache misses are not in them), but they follow it here:
the ratio of the two counts has matched the served ratio to ~0.02. Use it to tell
whether a change to the hot path made it cheaper; `make bench` is the measure of record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

from tests.perf import bench
from tests.perf.inprocess import Services, drive, make_apps, quiet_access_log, serving, services

SLOWDOWN = 50  # valgrind's, roughly, for this code
WARM_UP = 320


def stretch_time() -> dict[str, Any]:
    """Scale the hot path's periodic behaviour by SLOWDOWN; returns options for the access log."""
    from gateway.ops import accesslog
    from gateway.serving import disconnect
    from gateway.ops import metrics
    from gateway.serving import ticker

    disconnect.WATCH_AFTER_SECONDS *= SLOWDOWN
    metrics.FOLD_SECONDS *= SLOWDOWN
    ticker.RESOLUTION_SECONDS *= SLOWDOWN
    return {"flush_seconds": accesslog.FLUSH_SECONDS * SLOWDOWN}


async def child(running: Services, app_name: str, kind: str, requests: int) -> None:
    log_options = stretch_time()
    gateway, ceiling = make_apps(running)
    app, key = (gateway, running.key) if app_name == "gateway" else (ceiling, None)
    body = bench.PLAIN_BODY if kind == "plain" else bench.STREAM_BODY
    async with serving(app):
        if app is gateway:
            quiet_access_log(gateway, **log_options)
        await drive(app, key, body, WARM_UP)
        if requests:
            await drive(app, key, body, requests)


def under_valgrind(module: str, *args: str) -> subprocess.Popen:
    """`python -m module args` under valgrind (cachegrind, no cache simulation); its count is read by `counted`."""
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, "-m", module, *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def start(running: Services, app_name: str, kind: str, requests: int) -> subprocess.Popen:
    """One child run under valgrind; its count is read by `counted`."""
    return under_valgrind("tests.perf.instructions", "--child", json.dumps(running.__dict__), app_name, kind,
                          str(requests))


def counted(child_run: subprocess.Popen) -> int:
    """Instructions of one child run, start to end."""
    _, stderr = child_run.communicate()
    match = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if child_run.returncode != 0 or match is None:
        raise RuntimeError(f"valgrind run failed ({child_run.returncode}):\n{stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def per_request(running: Services, app_name: str, kind: str, requests: int) -> float:
    """The two runs side by side (a count does not depend on what else runs)."""
    full, empty = start(running, app_name, kind, requests), start(running, app_name, kind, 0)
    return (counted(full) - counted(empty)) / requests


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        import uvloop

        uvloop.run(child(Services(**json.loads(argv[1])), argv[2], argv[3], int(argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1280, help="requests counted per run (a multiple of 64)")
    parser.add_argument("--kinds", default="plain,stream")
    parser.add_argument("--gateway-only", action="store_true",
                        help="count the gateway alone (comparing two versions of it: the ceiling does not change)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    with services() as running:
        for kind in args.kinds.split(","):
            gateway = per_request(running, "gateway", kind, args.requests)
            if args.gateway_only:
                print(f"{kind:6}  gateway {gateway / 1000:6.0f}k instructions per request", flush=True)
                continue
            ceiling = per_request(running, "ceiling", kind, args.requests)
            print(f"{kind:6}  ceiling {ceiling / 1000:6.0f}k  gateway {gateway / 1000:6.0f}k instructions per request"
                  f"  difference {(gateway - ceiling) / 1000:5.0f}k  ceiling/gateway {ceiling / gateway:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
