"""`make bench`: the gateway side by side with its floor, its ceiling and LiteLLM, in one run.

    python -m tests.perf.bench [--quick] [--no-litellm] [--no-llm] [--profile] [--update-docs]

Rows, each measured with wrk (64 connections; and 1 connection for added latency):
    direct    the fast fake upstream alone (tests/perf/upstream.py): the floor
    ceiling   a bare raw-ASGI + aiohttp proxy on the same server stack (tests/perf/ceiling.py)
    gateway   `maas-gateway serve`, 1 worker, every feature on: auth (warm L1), policy,
              Prometheus metrics, JSON access log, Redis + Postgres invalidation, health probe
    gateway, limits on
              the same gateway, with a key whose rpm and tpm limits are too high ever to
              refuse: each request also pays the limiter (its Redis round trip, the counting)
    litellm   the real LiteLLM proxy with a mock model (when installed)
and, for the gateway: streaming TTFB overhead and chunk-by-chunk forwarding, cold/Redis/warm
key lookups, revocation propagation between two instances, RSS with 100,000 keys cached,
2 workers vs 1; and LLM-shaped load (tests/perf/streams.py): how many concurrent slow streams
with real prompt sizes direct, ceiling and gateway carry before chunks arrive late.

Pinning (2 cores, 3 roles): the proxy under test runs alone on CPU 1; wrk, the upstream,
Postgres, Redis and this harness share CPU 0 (`taskset`; this process pins itself first,
so everything it starts inherits CPU 0 unless started under `taskset -c 1`). The "direct"
row shows CPU 0 has room to spare: the upstream plus wrk serve several times what one proxy
core can. The 2-worker comparison needs both cores for the proxy, so it runs everything
unpinned (1 worker vs 2 workers, same conditions) and says so.

Results: bench-results/latest.json and bench-results/latest.md (and a dated copy of each);
the markdown is printed at the end. Every target's "met" is computed from this run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

from gateway.dev import services as devservices
from gateway.dev.services import free_port
from gateway.store.keys import hash_key, key_digest
from tests.perf import report
from tests.perf.client import Connection
from tests.perf.measure import CpuMeter, Wrk, cpu_list, percentile, rss_bytes, set_affinity

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RESULTS = REPO / "bench-results"
LITELLM_CONFIG = REPO / "deploy" / "litellm" / "config.yaml"
DOCS = REPO / "docs" / "performance.md"

LOAD_CPUS = {0}  # wrk, upstream, Postgres, Redis, this harness
PROXY_CPUS = {1}  # the proxy under test, alone
ALL_CPUS = {0, 1}

MODEL = "gpt-4o-mini"
BENCH_MODELS = ["gpt-4o-mini", "gpt-4o"]
_MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]
PLAIN_BODY = orjson.dumps({"model": MODEL, "messages": _MESSAGES, "max_tokens": 32})
STREAM_BODY = orjson.dumps({"model": MODEL, "messages": _MESSAGES, "max_tokens": 32, "stream": True})
PATH = "/v1/chat/completions"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-0000"
SERVICE_KEY = "sk-bench-service-0000"
PACED_GAP_MS = 10
KEYS_PER_USER = 2  # each bench user: 2 keys, active subscriptions to BENCH_MODELS
LIMITED = "gateway, limits on"  # the row: the gateway, the key with limits
HIGH_LIMIT = 1_000_000_000  # rpm and tpm of that key: counted, never reached
HIGH_QUOTA = 10**12  # quota_tokens of the LLM-shaped load's limits-on key (quota_requests is an INTEGER: HIGH_LIMIT)


@dataclass
class Settings:
    duration: float = 10.0  # seconds per measured 64-connection run
    warmup: float = 2.0
    latency_duration: float = 5.0  # the 1-connection runs
    litellm_duration: float = 10.0
    keys: int = 100_000  # keys cached for the memory measurement
    cold_keys: int = 2_000  # distinct keys for the in-process lookup timings
    ttfb_samples: int = 1_000
    paced_samples: int = 30
    revocation_trials: int = 10
    litellm: bool = True
    profile: bool = False
    quiet_wait: float = 30.0  # wait up to this long for other load on the machine to stop
    pair_rounds: int = 15  # ceiling and gateway taking turns: the throughput ratio is the median of these rounds
    pair_duration: float = 2.0  # short rounds: the two of a pair run within seconds of each other
    instruction_requests: int = 1_280  # per valgrind run (a multiple of 64)
    llm: bool = True  # the LLM-shaped scenario (tests/perf/streams.py)
    llm_quick: bool = False

    @classmethod
    def quick(cls) -> "Settings":
        return cls(duration=3, warmup=1, latency_duration=2, litellm_duration=4, keys=10_000, cold_keys=500,
                   ttfb_samples=200, paced_samples=10, revocation_trials=3, pair_rounds=3, pair_duration=2.0, instruction_requests=320,
                   llm_quick=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "content-type": "application/json"}


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Run this thread (and what it starts) on `cpus` for a while."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# -- seeding -----------------------------------------------------------------------------------


@dataclass
class Seed:
    key: str  # the throughput key: warm in L1 for every gateway run
    limited_key: str  # the same, with rpm and tpm limits (HIGH_LIMIT) that the limiter counts
    quota_key: str  # limited_key's limits plus quotas on its subscriptions: the LLM-shaped load's limits-on row
    quota_user: str  # quota_key's user (tests/perf/streams.py reads its quota counters in Redis)
    revocation: list[tuple[str, str]]  # (key, key id) revoked one per trial
    fill_keys: list[str]  # cached for the memory measurement
    cold_digests: list[bytes]  # never requested over HTTP: for the in-process lookup timings


async def seed(database_url: str, settings: Settings) -> Seed:
    import asyncpg

    from gateway.store import db
    from tests.support import seed_key

    await db.migrate_url(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        main = await seed_key(pool, models=BENCH_MODELS)
        limited = await seed_key(pool, models=BENCH_MODELS)
        await pool.execute("UPDATE api_keys SET rpm_limit = $2, tpm_limit = $2 WHERE id = $1", limited.key_id, HIGH_LIMIT)
        quota = await seed_key(pool, models=BENCH_MODELS)
        await pool.execute("UPDATE api_keys SET rpm_limit = $2, tpm_limit = $2 WHERE id = $1", quota.key_id, HIGH_LIMIT)
        await pool.execute("UPDATE subscriptions SET quota_requests = $2, quota_tokens = $3 WHERE user_id = $1",
                           quota.user_id, HIGH_LIMIT, HIGH_QUOTA)
        revocation = [await seed_key(pool, models=[MODEL]) for _ in range(settings.revocation_trials)]
        total = settings.keys + settings.cold_keys
        keys = ["sk-bench-" + secrets.token_urlsafe(24) for _ in range(total)]
        users = [f"bench-user-{i:06d}" for i in range(-(-total // KEYS_PER_USER))]
        key_ids = [str(uuid.uuid4()) for _ in range(total)]
        async with pool.acquire() as conn, conn.transaction():
            # Bulk load: no triggers (no NOTIFY per row; no gateway listens yet anyway), no FK checks.
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.copy_records_to_table(
                "users", columns=["id", "username", "email", "is_active", "sync_status"],
                records=[(u, u, f"{u}@bench.example", True, "synced") for u in users],
            )
            await conn.copy_records_to_table(
                "subscriptions", columns=["id", "user_id", "model_id", "status"],
                records=[(str(uuid.uuid4()), u, m, "active") for u in users for m in BENCH_MODELS],
            )
            await conn.copy_records_to_table(
                "api_keys", columns=["id", "user_id", "name", "key_hash", "key_prefix", "is_active"],
                records=[(key_ids[i], users[i // KEYS_PER_USER], "bench", hash_key(k), k[:7], True) for i, k in enumerate(keys)],
            )
            await conn.copy_records_to_table(
                "api_key_models", columns=["api_key_id", "model_id"],
                records=[(kid, m) for kid in key_ids for m in BENCH_MODELS],
            )
        await pool.execute("ANALYZE")
    finally:
        await pool.close()
    return Seed(
        key=main.key,
        limited_key=limited.key,
        quota_key=quota.key,
        quota_user=quota.user_id,
        revocation=[(s.key, s.key_id) for s in revocation],
        fill_keys=keys[: settings.keys],
        cold_digests=[key_digest(k) for k in keys[settings.keys :]],
    )


# -- the run -----------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, work: Path) -> None:
        self.s = settings
        self.work = work
        self.wrk = Wrk(work, LOAD_CPUS)
        self.procs: list[subprocess.Popen] = []
        self.results: dict[str, Any] = {"rows": {}, "gateway": {}, "notes": []}

    # processes

    def spawn(self, name: str, argv: list[str], cpus: set[int], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.work / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                ["taskset", "-c", cpu_list(cpus), *argv], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc.name = name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.work / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, proc: subprocess.Popen, port: int, method: str, path: str,
                  headers: dict[str, str] | None = None, body: bytes = b"", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.name} exited ({proc.returncode}):\n{self.log_tail(proc.name)}")  # type: ignore[attr-defined]
            try:
                conn = Connection("127.0.0.1", port, timeout=5)
                response = conn.request(method, path, headers, body)
                conn.close()
                if response.status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not ready on :{port} after {timeout:.0f}s:\n{self.log_tail(proc.name)}")  # type: ignore[attr-defined]
            time.sleep(0.1)

    # load

    def quiet(self) -> float:
        """Wait (up to settings.quiet_wait) until nothing outside this harness is busy; returns that load."""
        deadline = time.monotonic() + self.s.quiet_wait
        while True:
            with CpuMeter([]) as meter:
                time.sleep(0.5)
            load = meter.sample.foreign_s / meter.sample.wall
            if load < 0.1 or time.monotonic() > deadline:
                return load
            time.sleep(0.5)

    def load(self, name: str, port: int, targets: list[int], body: bytes, key: str | None = None, *,
             connections: int = 64, duration: float | None = None, warmup: float | None = None,
             cpus: set[int] | None = None, timeout_s: int = 10) -> dict:
        url = f"http://127.0.0.1:{port}{PATH}"
        duration = self.s.duration if duration is None else duration
        warmup = self.s.warmup if warmup is None else warmup
        best: dict | None = None
        for attempt in range(2):  # once more when another job on the machine got in the way
            self.quiet()
            if warmup:
                self.wrk.run(url, body=body, key=key, connections=connections, duration=warmup, cpus=cpus, timeout_s=timeout_s)
            result = self.wrk.run(url, body=body, key=key, connections=connections, duration=duration,
                                  targets=targets, cpus=cpus, timeout_s=timeout_s)
            if best is None or result["cpu"]["foreign_load"] < best["cpu"]["foreign_load"]:
                best = result
            if result["cpu"]["foreign_load"] < 0.1:
                break
            log(f"  {name}: other processes used {result['cpu']['foreign_load']:.2f} of a core during the run; again")
        assert best is not None
        best["disturbed"] = best["cpu"]["foreign_load"] >= 0.1
        log(f"  {name}: {best['rps']:,.0f} req/s, p50 {best['p50_ms']:.2f} ms, p99 {best['p99_ms']:.2f} ms, "
            f"p99.9 {best['p999_ms']:.2f} ms, {best['cpu_us_per_request'] or 0:.0f} us CPU/req, errors {best['errors']}")
        if best["errors"]:
            self.results["notes"].append(f"{name}: {best['errors']} errors (non-2xx or socket) in {best['requests']} requests")
        return best

    def row(self, name: str, port: int, targets: list[int], key: str | None = None, *,
            duration: float | None = None, latency_duration: float | None = None) -> dict:
        row = {
            "plain": self.load(f"{name} plain", port, targets, PLAIN_BODY, key, duration=duration),
            "stream": self.load(f"{name} stream", port, targets, STREAM_BODY, key, duration=duration),
            "latency_1c": self.load(f"{name} 1 connection", port, targets, PLAIN_BODY, key, connections=1,
                                    duration=latency_duration or self.s.latency_duration, warmup=1),
        }
        self.results["rows"][name] = row
        return row

    def paired(self, targets: dict[str, tuple[int, list[int], str | None]], kinds: tuple[str, ...] = ("plain", "stream"),
               cpus: set[int] | None = None) -> tuple[dict[str, dict[str, dict]], dict[str, Any]]:
        """Throughput of two (or more) servers taking turns round by round: (rows, ratios).

        This machine's speed drifts by tens of percent over minutes (a shared VM host), so
        one long run of each would compare different machines. Rounds alternate A B, B A, ...
        (A B C, C B A, ... for three); each row keeps its median round, and the ratio second /
        first is the median of the per-round ratios (ratios[kind]); with a third, third / second
        too (ratios["third"][kind]). targets: name -> (port, pids whose CPU is counted, key).
        """
        s = self.s
        names = list(targets)
        rows: dict[str, dict[str, dict]] = {name: {} for name in names}
        ratios: dict[str, Any] = {"rounds": s.pair_rounds, "round_seconds": s.pair_duration}
        for kind in kinds:
            body = PLAIN_BODY if kind == "plain" else STREAM_BODY
            runs: dict[str, list[dict]] = {name: [] for name in names}
            for index in range(s.pair_rounds):
                for name in names if index % 2 == 0 else reversed(names):
                    port, pids, key = targets[name]
                    runs[name].append(self.load(f"{name} {kind} round {index + 1}", port, pids, body, key,
                                                duration=s.pair_duration, warmup=1, cpus=cpus))
            for name in names:
                ordered = sorted(runs[name], key=lambda run: run["rps"])
                rows[name][kind] = {**ordered[len(ordered) // 2], "rounds_rps": [run["rps"] for run in runs[name]]}
            pairs = [(names[0], names[1], ratios)]
            if len(names) > 2:
                pairs.append((names[1], names[2], ratios.setdefault("third", {})))
            for first, second, into in pairs:
                per_round = [b["rps"] / a["rps"] for a, b in zip(runs[first], runs[second])]
                into[kind] = {"ratios": [round(r, 3) for r in per_round], "median": round(sorted(per_round)[len(per_round) // 2], 3)}
                log(f"  {second} / {first}, {kind}: median {into[kind]['median']:.3f} of {into[kind]['ratios']}")
        return rows, ratios

    def profile(self, name: str, proc: subprocess.Popen, port: int, key: str | None) -> None:
        """py-spy (if installed) on the proxy during a plain and a streamed run: where the time goes."""
        spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
        if spy is None:
            self.results["notes"].append("--profile: py-spy not installed (pip install py-spy)")
            return
        for kind, body in (("plain", PLAIN_BODY), ("stream", STREAM_BODY)):
            raw = self.work / f"profile-{name}-{kind}.txt"
            seconds = max(3, int(self.s.duration))
            spy_proc = subprocess.Popen(
                ["taskset", "-c", cpu_list(LOAD_CPUS), spy, "record", "--nonblocking", "-r", "200", "-f", "raw",
                 "-d", str(seconds), "-p", str(proc.pid), "-o", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.wrk.run(f"http://127.0.0.1:{port}{PATH}", body=body, key=key, duration=seconds + 2)
            spy_proc.wait(60)
            if raw.exists():
                summary = report.profile_summary(raw.read_text())
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / f"profile-{name}-{kind}.txt").write_text(summary)
                shutil.copy(raw, RESULTS / f"profile-{name}-{kind}.raw")
                log(f"  profile: bench-results/profile-{name}-{kind}.txt")

    # the phases

    def run(self) -> dict:
        s = self.s
        os.sched_setaffinity(0, LOAD_CPUS)
        self.results["meta"] = report.machine()
        self.results["settings"] = asdict(s)
        self.results["meta"]["pinning"] = (
            f"proxy under test alone on CPU {cpu_list(PROXY_CPUS)}; wrk (1 thread), upstream, Postgres, Redis and the "
            f"harness on CPU {cpu_list(LOAD_CPUS)} (taskset); 2-workers comparison: everything on CPUs {cpu_list(ALL_CPUS)}"
        )
        log("starting Postgres and Redis")
        postgres = devservices.start_postgres(self.work / "pg")
        redis = devservices.start_redis(self.work / "redis")
        try:
            log(f"seeding {s.keys + s.cold_keys:,} keys")
            started = time.perf_counter()
            seeded = asyncio.run(seed(postgres.url, s))
            log(f"  seeded in {time.perf_counter() - started:.1f}s")
            self._phases(postgres.url, redis.url, seeded)
        finally:
            self.stop_all()
            redis.stop()
            postgres.stop()
        report.evaluate(self.results)
        return self.results

    def _phases(self, database_url: str, redis_url: str, seeded: Seed) -> None:
        s = self.s
        upstream_port = free_port()
        upstream = self.spawn("upstream", [sys.executable, "-m", "tests.perf.upstream", str(upstream_port)], LOAD_CPUS)
        self.wait_http(upstream, upstream_port, "GET", "/health/liveliness")
        upstream_url = f"http://127.0.0.1:{upstream_port}"

        log("direct: the fake upstream alone")
        self.row("direct", upstream_port, [upstream.pid])

        log("ceiling: raw ASGI + aiohttp, no features")
        port = free_port()
        ceiling = self.spawn(
            "ceiling",
            [str(BIN / "uvicorn"), "tests.perf.ceiling:app", "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
             "--http", "httptools", "--no-access-log", "--log-level", "warning",
             "--no-proxy-headers", "--no-server-header"],  # as `maas-gateway serve` runs uvicorn
            PROXY_CPUS, env=dict(os.environ, CEILING_UPSTREAM=upstream_url),
        )
        self.wait_http(ceiling, port, "POST", PATH, {"content-type": "application/json"}, PLAIN_BODY)
        ceiling_port = port

        log("gateway: maas-gateway serve, 1 worker, all features on")
        env = {
            **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LITELLM_URL": upstream_url,
            "LITELLM_API_KEY": SERVICE_KEY,
        }
        gateway, gw_port = self.start_gateway("gateway", env, PROXY_CPUS, workers=1, key=seeded.key)
        self.wait_http(gateway, gw_port, "POST", PATH, auth(seeded.limited_key), PLAIN_BODY)  # warm too

        log(f"ceiling, gateway and {LIMITED}, taking turns ({s.pair_rounds} rounds of {s.pair_duration:.0f} s, plain and streamed)")
        rows, self.results["paired"] = self.paired(
            {"ceiling": (ceiling_port, [ceiling.pid], None), "gateway": (gw_port, [gateway.pid], seeded.key),
             LIMITED: (gw_port, [gateway.pid], seeded.limited_key)})
        for name, row in rows.items():
            self.results["rows"][name] = row
        for name, port, proc, key in (("ceiling", ceiling_port, ceiling, None), ("gateway", gw_port, gateway, seeded.key),
                                      (LIMITED, gw_port, gateway, seeded.limited_key)):
            self.results["rows"][name]["latency_1c"] = self.load(f"{name} 1 connection", port, [proc.pid], PLAIN_BODY, key,
                                                                 connections=1, duration=s.latency_duration, warmup=1)
        self.results["gateway"]["store_calls_per_request"] = self.store_calls(gw_port, [gateway.pid], seeded.key,
                                                                              redis_url, database_url)
        if s.profile:
            self.profile("ceiling", ceiling, ceiling_port, None)
            self.profile("gateway", gateway, gw_port, seeded.key)

        log("gateway: streaming time to first byte and chunk forwarding (1 connection; the ceiling for reference)")
        proxies = {"ceiling": ceiling_port, "gateway": gw_port}
        self.results["gateway"]["ttfb"] = self.ttfb(upstream_port, proxies, seeded.key)
        self.results["gateway"]["chunks"] = self.paced(upstream_port, proxies, seeded.key)
        self.stop(ceiling)

        log("gateway: key lookups in-process (KeyStore against this Redis and Postgres)")
        with pinned(PROXY_CPUS):
            self.results["gateway"]["key_lookup"] = asyncio.run(
                key_lookups(database_url, redis_url, seeded.cold_digests, key_digest(seeded.key)))
        log("  " + ", ".join(f"{k}: p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms" for k, v in
                             self.results["gateway"]["key_lookup"].items() if isinstance(v, dict) and "p99_ms" in v))

        log("gateway: revocation propagation between two instances")
        other, other_port = self.start_gateway("gateway-b", env, PROXY_CPUS, workers=1, key=seeded.key)
        self.results["gateway"]["revocation"] = asyncio.run(
            revocation(database_url, [gw_port, other_port], seeded.revocation))
        self.stop(other)

        log(f"gateway: resident memory with {s.keys:,} keys cached")
        self.results["gateway"]["memory"] = self.memory(gateway, gw_port, seeded)
        self.stop(gateway)

        log("gateway: 2 workers vs 1 (everything on both CPUs)")
        self.results["gateway"]["workers"] = self.workers(env, upstream, seeded.key)

        if s.llm:
            from tests.perf import streams

            log("LLM-shaped load: concurrent slow streams (tests/perf/streams.py)")
            stream_settings = streams.StreamSettings.quick() if s.llm_quick else streams.StreamSettings()
            stream_settings.litellm = s.litellm
            self.results["llm"] = streams.Scenario(self, stream_settings, upstream, upstream_port, env, seeded.key,
                                                    limited=(seeded.quota_key, seeded.quota_user)).run()
        else:
            self.results["notes"].append("LLM-shaped load skipped (--no-llm)")

        self.instructions(database_url, redis_url, upstream_url, seeded.key)

        if s.litellm:
            log("litellm: the LiteLLM proxy with a mock model")
            self.litellm()
        else:
            self.results["notes"].append("LiteLLM skipped (--no-litellm)")

    def instructions(self, database_url: str, redis_url: str, upstream_url: str, key: str) -> None:
        """Instructions per request, ceiling and gateway, under valgrind (tests/perf/instructions.py)."""
        from tests.perf import instructions  # imports this module
        from tests.perf.inprocess import Services

        if shutil.which("valgrind") is None:
            self.results["notes"].append("instruction counts skipped (no valgrind)")
            return
        log(f"ceiling and gateway: instructions per request under valgrind ({self.s.instruction_requests} requests)")
        running = Services(database_url, redis_url, upstream_url, key)
        counts: dict[str, dict[str, float]] = {}
        for kind in ("plain", "stream"):
            counts[kind] = {app: round(instructions.per_request(running, app, kind, self.s.instruction_requests))
                            for app in ("ceiling", "gateway")}
            counts[kind]["ratio"] = round(counts[kind]["ceiling"] / counts[kind]["gateway"], 3)
            log(f"  {kind}: ceiling {counts[kind]['ceiling'] / 1000:,.0f}k, gateway {counts[kind]['gateway'] / 1000:,.0f}k, "
                f"ratio {counts[kind]['ratio']:.3f}")
        self.results["instructions"] = counts

    def start_gateway(self, name: str, env: dict[str, str], cpus: set[int], workers: int, key: str,
                      config_text: str = "litellm:\n  sync_users: false\n") -> tuple[subprocess.Popen, int]:
        port = free_port()
        config = self.work / f"{name}.yaml"
        # An operator's file: everything at its default except what a LiteLLM without a database needs.
        config.write_text(config_text)
        proc = self.spawn(
            name,
            [str(BIN / "maas-gateway"), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers)],
            cpus, env=env,
        )
        self.wait_http(proc, port, "GET", "/health/live")
        self.wait_http(proc, port, "POST", PATH, auth(key), PLAIN_BODY)  # the key is now warm
        return proc, port

    def store_calls(self, port: int, targets: list[int], key: str, redis_url: str, database_url: str) -> dict:
        """Redis commands and Postgres transactions per request while every request uses a warm key."""
        before = self.store_counters(redis_url, database_url)
        run = self.wrk.run(f"http://127.0.0.1:{port}{PATH}", body=PLAIN_BODY, key=key, duration=max(3, self.s.duration / 2),
                           targets=targets)
        after = self.store_counters(redis_url, database_url)
        out = {
            "requests": run["requests"],
            "redis_commands": after[0] - before[0],
            "postgres_transactions": after[1] - before[1],
            "redis_commands_per_request": round((after[0] - before[0]) / run["requests"], 6),
            "postgres_transactions_per_request": round((after[1] - before[1]) / run["requests"], 6),
            "note": "includes the background health probe and model-list refresh; the counters' own reads are excluded",
        }
        log(f"  warm key: {out['redis_commands']} Redis commands and {out['postgres_transactions']} Postgres transactions "
            f"for {run['requests']:,} requests")
        return out

    def store_counters(self, redis_url: str, database_url: str) -> tuple[int, int]:
        """(Redis commands processed, Postgres transactions committed) so far."""
        import redis as redis_sync

        client = redis_sync.Redis.from_url(redis_url)
        commands = int(client.info("stats")["total_commands_processed"])
        client.close()

        async def transactions() -> int:
            import asyncpg

            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute("SELECT pg_stat_clear_snapshot()")
                return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))
            finally:
                await conn.close()

        return commands, asyncio.run(transactions())

    def ttfb(self, upstream_port: int, proxies: dict[str, int], key: str) -> dict:
        """Unpaced streams, taking turns (direct, then each proxy): first body byte after the request was sent."""
        conns = {"direct": Connection("127.0.0.1", upstream_port)}
        conns.update({name: Connection("127.0.0.1", port) for name, port in proxies.items()})
        headers = auth(key)
        samples: dict[str, list[float]] = {name: [] for name in conns}
        self.quiet()
        for i in range(self.s.ttfb_samples + 50):
            for name, conn in conns.items():
                response = conn.request("POST", PATH, headers, STREAM_BODY)
                if response.status != 200:
                    raise RuntimeError(f"ttfb via {name}: status {response.status}: {response.body[:300]!r}")
                if i >= 50:  # warm-up
                    samples[name].append(response.ttfb * 1000)
        for conn in conns.values():
            conn.close()
        out: dict[str, Any] = {"samples": self.s.ttfb_samples}
        for name, values in samples.items():
            for q in (50, 99):
                out[f"{name}_p{q}_ms"] = round(percentile(values, q), 4)
                if name != "direct":
                    out[f"{name}_overhead_p{q}_ms"] = round(percentile(values, q) - percentile(samples["direct"], q), 4)
        for name in proxies:  # the gateway's keys keep their old names
            if name == "gateway":
                out["overhead_p50_ms"], out["overhead_p99_ms"] = out["gateway_overhead_p50_ms"], out["gateway_overhead_p99_ms"]
        log("  TTFB p50 (ms): " + ", ".join(f"{n} {out[f'{n}_p50_ms']}" for n in conns) + "; overhead p50/p99: "
            + ", ".join(f"{n} {out[f'{n}_overhead_p50_ms']}/{out[f'{n}_overhead_p99_ms']}" for n in proxies))
        return out

    def paced(self, upstream_port: int, proxies: dict[str, int], key: str) -> dict:
        """Streams whose chunks leave the upstream PACED_GAP_MS apart: does each arrive on its own, on time?"""
        headers = dict(auth(key), **{"x-bench-gap-ms": str(PACED_GAP_MS)})
        conns = {"direct": Connection("127.0.0.1", upstream_port)}
        conns.update({name: Connection("127.0.0.1", port) for name, port in proxies.items()})
        results: dict[str, list[list[float]]] = {name: [] for name in conns}
        for _ in range(self.s.paced_samples):
            for name, conn in conns.items():
                response = conn.request("POST", PATH, headers, STREAM_BODY)
                if response.status != 200:
                    raise RuntimeError(f"paced stream via {name}: {response.status}")
                results[name].append([t * 1000 for t in response.events])
        for conn in conns.values():
            conn.close()
        events = len(results["direct"][0])
        out: dict[str, Any] = {"events_per_stream": events, "gap_ms": PACED_GAP_MS, "samples": self.s.paced_samples}
        for name in proxies:
            # The gateway removes the usage event it asked LiteLLM for (README, "External contract"),
            # one event fewer: events pair up by position, and each stream's last ([DONE]) with direct's.
            forwarded = min(len(e) for e in results[name])
            lags = []
            for i, j in [*((i, i) for i in range(forwarded - 1)), (events - 1, forwarded - 1)]:
                d = percentile([e[i] for e in results["direct"]], 50)
                g = percentile([e[j] for e in results[name]], 50)
                lags.append(round(g - d, 4))
            # events that reached the client together although they left the upstream apart
            merged = [sum(1 for a, b in zip(sample, sample[1:]) if b - a < PACED_GAP_MS / 2) for sample in results[name]]
            prefix = "" if name == "gateway" else f"{name}_"
            out[f"{prefix}median_lag_per_event_ms"] = lags
            out[f"{prefix}max_median_lag_ms"] = max(lags)
            out[f"{prefix}coalesced_events"] = sum(merged)
            out[f"{prefix}streams_with_merged_events"] = streams = sum(1 for m in merged if m)
            log(f"  chunks via {name}: {events} events {PACED_GAP_MS} ms apart; median lag per event vs direct {lags}; "
                f"merged {sum(merged)} (in {streams} of {len(merged)} streams)")
        return out

    def memory(self, gateway: subprocess.Popen, port: int, seeded: Seed) -> dict:
        entries_before = self.cache_entries(port)
        rss_before = rss_bytes(gateway.pid)
        keys_file = self.work / "fill-keys.txt"
        keys_file.write_text("\n".join(seeded.fill_keys) + "\n")
        self.quiet()
        # every fill key, plus the throughput key (still in the dict even when past its TTL); the
        # revocation keys may have been dropped by their invalidation, so they are not counted
        wanted = len(seeded.fill_keys) + 1
        fill = self.wrk.run(f"http://127.0.0.1:{port}{PATH}", body=PLAIN_BODY, connections=64, duration=900,
                            targets=[gateway.pid], keys_file=keys_file, until=lambda: self.cache_entries(port) >= wanted)
        entries = self.cache_entries(port)
        rss = rss_bytes(gateway.pid)
        log(f"  sent {fill['requests']:,} requests with {len(seeded.fill_keys):,} distinct keys at {fill['rps']:,.0f} req/s (cold lookups; errors {fill['errors']}): "
            f"L1 entries {entries_before} -> {entries}, RSS {rss_before / 2**20:.1f} -> {rss / 2**20:.1f} MiB")
        after = self.load("gateway plain, 100k keys cached", port, [gateway.pid], PLAIN_BODY, seeded.key,
                          duration=max(3, self.s.duration / 2))
        return {
            "keys_requested": fill["requests"],
            "fill_rps": fill["rps"],
            "fill_errors": fill["errors"],
            "fill_p99_ms": fill["p99_ms"],
            "l1_entries_before": entries_before,
            "l1_entries": entries,
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_mib": round(rss / 2**20, 1),
            "bytes_per_key": round((rss - rss_before) / max(1, entries - entries_before)),
            "plain_after_fill": after,
            "rss_after_run_mib": round(rss_bytes(gateway.pid) / 2**20, 1),
        }

    def cache_entries(self, port: int) -> int:
        conn = Connection("127.0.0.1", port)
        response = conn.request("GET", "/metrics")
        conn.close()
        match = re.search(rb"^maas_gateway_key_cache_entries(?:\{[^}]*\})? ([0-9.e+]+)$", response.body, re.M)
        return int(float(match.group(1))) if match else -1

    def workers(self, env: dict[str, str], upstream: subprocess.Popen, key: str) -> dict:
        set_affinity(upstream.pid, ALL_CPUS)
        out: dict[str, Any] = {"cpus": cpu_list(ALL_CPUS)}
        try:
            targets = {}
            for workers in (1, 2):
                proc, port = self.start_gateway(f"gateway-{workers}w", env, ALL_CPUS, workers=workers, key=key)
                targets[f"w{workers}"] = (port, [proc.pid], key)
            # both serve at once, loaded in turns (the idle one costs nothing): the same machine for both
            rows, ratios = self.paired(targets, kinds=("plain",), cpus=ALL_CPUS)
            for name in ("w1", "w2"):
                out[name] = rows[name]["plain"]
            out["ratios"] = ratios["plain"]["ratios"]
            for proc in [p for p in self.procs if p.name.startswith("gateway-") and p.name.endswith("w")]:  # type: ignore[attr-defined]
                self.stop(proc)
        finally:
            set_affinity(upstream.pid, LOAD_CPUS)
        out["ratio"] = ratios["plain"]["median"]
        # The gateway's own CPU use in each run: how many cores it got, and what it did per core.
        for name in ("w1", "w2"):
            run = out[name]
            run["gateway_cores"] = round(run["cpu"]["target_cpu_s"] / run["cpu"]["wall_s"], 3)
            run["rps_per_gateway_core"] = round(run["rps"] / run["gateway_cores"], 1) if run["gateway_cores"] else None
        if out["w1"]["rps_per_gateway_core"] and out["w2"]["rps_per_gateway_core"]:
            out["per_core_efficiency"] = round(out["w2"]["rps_per_gateway_core"] / out["w1"]["rps_per_gateway_core"], 3)
        log(f"  2 workers / 1 worker = {out['ratio']:.2f}x (gateway used {out['w1']['gateway_cores']} vs "
            f"{out['w2']['gateway_cores']} cores)")
        return out

    def litellm(self) -> None:
        if shutil.which("litellm", path=str(BIN)) is None:
            try:
                import litellm  # noqa: F401
            except ImportError:
                self.results["notes"].append("LiteLLM not installed: no litellm row (pip install 'litellm[proxy]' prisma)")
                return
        with pinned(PROXY_CPUS):  # its processes inherit CPU 1
            service = devservices.start_litellm(LITELLM_CONFIG, self.work / "litellm", master_key=LITELLM_MASTER_KEY)
        try:
            conn = Connection("127.0.0.1", service.port)
            for _ in range(5):
                response = conn.request("POST", PATH, auth(LITELLM_MASTER_KEY), PLAIN_BODY)
                if response.status != 200:
                    raise RuntimeError(f"litellm answered {response.status}: {response.body[:300]!r}")
            conn.close()
            self.row("litellm", service.port, [service.process.pid], LITELLM_MASTER_KEY,
                     duration=self.s.litellm_duration, latency_duration=max(2, self.s.latency_duration / 2))
        finally:
            service.stop()


async def key_lookups(database_url: str, redis_url: str, cold_hashes: list[bytes], warm_hash: bytes) -> dict:
    """KeyStore.lookup timed in-process, as the gateway calls it, against the real Redis and Postgres."""
    import redis.asyncio as aioredis

    from gateway.store import db
    from gateway.config import load_config
    from gateway.store.keys import KeyStore

    config = load_config(None, {"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    pool = await db.create_pool(database_url, config.database)
    redis = aioredis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    half = len(cold_hashes) // 2

    async def timed(store: KeyStore, hashes: list[bytes]) -> list[float]:
        times = []
        for h in hashes:
            started = time.perf_counter()
            record = await store.lookup(h)
            times.append((time.perf_counter() - started) * 1000)
            assert record is not None, "a seeded key was not found"
            await store.settle()  # its Redis write, behind the answer, is not the next lookup's wait
        return times

    def stats(times: list[float]) -> dict:
        return {"samples": len(times), "p50_ms": round(percentile(times, 50), 4), "p99_ms": round(percentile(times, 99), 4),
                "max_ms": round(max(times), 4)}

    # This process holds every seeded key: its own full collections would show up in the timings.
    gc.collect()
    gc.freeze()
    try:
        store = KeyStore(pool, redis, config.cache)
        await store.lookup(warm_hash)  # connections open; the warm key is in L1
        cold = await timed(store, cold_hashes[:half])  # L1 miss, Redis miss, Postgres (Redis filled behind)
        redis_hit = await timed(KeyStore(pool, redis, config.cache), cold_hashes[:half])  # a fresh L1; Redis has them
        postgres_only = await timed(KeyStore(pool, None, config.cache), cold_hashes[half:])  # REDIS_URL unset
        n = 200_000
        started = time.perf_counter()
        for _ in range(n):
            store.cached(warm_hash)
        cached_ns = (time.perf_counter() - started) / n * 1e9
        started = time.perf_counter()
        for _ in range(n // 10):
            await store.lookup(warm_hash)
        lookup_ns = (time.perf_counter() - started) / (n // 10) * 1e9
        hit = store.cached(warm_hash)
    finally:
        gc.unfreeze()
        await redis.aclose()
        await pool.close()
    return {
        "method": "in-process KeyStore against the benchmark's Postgres and Redis (harness thread on the proxy's CPU, "
                  "the harness's own objects frozen out of its garbage collector)",
        "cold": stats(cold),
        "redis_hit": stats(redis_hit),
        "postgres_only": stats(postgres_only),
        "warm_cached_ns": round(cached_ns),
        "warm_lookup_ns": round(lookup_ns),
        "warm_is_dict_hit": hit is not False and hit is not None and not asyncio.iscoroutine(hit),
    }


async def revocation(database_url: str, ports: list[int], keys: list[tuple[str, str]]) -> dict:
    """Revoke a warm key with SQL; poll every instance until each refuses it."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    clients = [Connection("127.0.0.1", p) for p in ports]
    trials = []
    try:
        for key, key_id in keys:
            for client in clients:
                for _ in range(2):
                    r = client.request("POST", PATH, auth(key), PLAIN_BODY)
                    if r.status != 200:
                        raise RuntimeError(f"revocation: key not usable before the revocation ({r.status})")
            started = time.perf_counter()
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
            committed = time.perf_counter() - started
            seen: dict[int, float] = {}
            while len(seen) < len(clients) and time.perf_counter() - started < 10:
                for i, client in enumerate(clients):
                    if i in seen:
                        continue
                    r = client.request("POST", PATH, auth(key), PLAIN_BODY)
                    if r.status == 401:
                        seen[i] = time.perf_counter() - started
            worst = max(seen.values()) if len(seen) == len(clients) else float("inf")
            trials.append({"commit_ms": round(committed * 1000, 3), "visible_ms": [round(seen.get(i, float("inf")) * 1000, 3) for i in range(len(clients))],
                           "all_ms": round(worst * 1000, 3)})
    finally:
        await conn.close()
        for client in clients:
            client.close()
    worst = [t["all_ms"] for t in trials]
    out = {
        "instances": len(ports),
        "trials": trials,
        "median_ms": round(percentile(worst, 50), 3),
        "max_ms": round(max(worst), 3),
        "method": "UPDATE api_keys SET revoked_at = now() (autocommit), then each instance polled until it answers 401",
    }
    log(f"  revocation visible on both instances: median {out['median_ms']} ms, max {out['max_ms']} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs and 10,000 keys: checks the harness, not the numbers")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM row")
    parser.add_argument("--no-llm", action="store_true", help="skip the LLM-shaped streams (tests/perf/streams.py)")
    parser.add_argument("--profile", action="store_true", help="also profile ceiling and gateway with py-spy under load")
    parser.add_argument("--update-docs", action="store_true", help="write the table into docs/performance.md")
    parser.add_argument("--duration", type=float, help="seconds per measured 64-connection run")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    settings.litellm = not args.no_litellm
    settings.profile = args.profile
    settings.llm = not args.no_llm
    if args.duration:
        settings.duration = args.duration
    if len(os.sched_getaffinity(0)) < 2 or os.cpu_count() < 2:
        print("bench: needs 2 CPUs (one for the proxy, one for the load)", file=sys.stderr)
        return 2
    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanups below

    signal.signal(signal.SIGTERM, terminated)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="maas-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # Postgres (as user postgres) keeps its files here
        bench = Bench(settings, work)
        try:
            results = bench.run()
        except BaseException:
            bench.stop_all()
            raise
    results["meta"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    markdown = report.markdown(results)
    RESULTS.mkdir(exist_ok=True)
    stamp = results["meta"]["date"].replace(":", "").replace("-", "")[:13]
    for name in ("latest", f"run-{stamp}"):
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / f"{name}.md").write_text(markdown)
    if args.update_docs:
        report.update_docs(DOCS, markdown)
    print()
    print(markdown)
    log(f"done in {results['meta']['wall_seconds']:.0f}s: bench-results/latest.json, bench-results/latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
