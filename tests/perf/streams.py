"""LLM-shaped load: how many concurrent streams one worker carries before tokens arrive late.

    python -m tests.perf.streams [--quick] [--steps 100,250,500] [--no-litellm]   (alone, ~14 min; --quick ~5)
    python -m tests.perf.streams --at 710 --repeat 3 [--targets direct,gateway]  (one N, run after run)
    part of `make bench` (tests/perf/bench.py), with the processes it already runs

N users each hold a stream open all the time (closed loop: a stream ends, the same user
sends the next at once): ~30 events per second for ~10 s, 8-32 KB JSON prompts. The fake
upstream (tests/perf/upstream.py, `x-bench-events`) stamps each event with the time it was
due; the generator (tests/perf/streamload.py) records each event's lateness (arrival - due).
Per N, side by side in one run, each alone on the proxy's CPU in turn:

    direct   generator -> upstream: the floor (what the load side itself adds)
    ceiling  generator -> tests/perf/ceiling.py -> upstream
    gateway  generator -> `maas-gateway serve` (every feature on) -> upstream

A proxy's *added delay* at N is its lateness percentile minus direct's at the same N. N
steps up until each proxy's added p99 passes the threshold (one event interval: a token a
whole token late), then `refine` geometric bisections between its last pass and first
failure; the **capacity** is the largest N that passed (within the threshold, no errors).
Then HALF_ROUNDS rounds of direct, ceiling and gateway at half the ceiling's capacity, for the
latency ratio (each proxy's median added p99 over the rounds). Then `gateway, limits on` (the same process,
requests made with a key whose limits and quotas are counted, never reached) at that N and at
the gateway's capacity: its CPU per stream-second against the gateway's is the stated cost of
limits (`limits_cost`). Pinning as in the bench: the proxy alone on CPU 1; upstream, generator, Postgres,
Redis on CPU 0. The direct row shows when CPU 0 itself runs out (its upstream and generator
at 0.9 of a core, or behind on their events): past that, nothing is measured (capacities
are then "at least"). On a shared host a failure under other jobs' load is measured once
more, the better run kept; streams per core by CPU cost (`cpu_capacity`, the two proxies
compared at the same N) is stated beside the latency capacity, as it hardly depends on those jobs.

LiteLLM: its mock streams cannot be paced, so it is measured in front of a second fake
upstream whose every stream is paced (`litellm_ladder`); it rewrites each event, dropping
the due time, so its added delay is measured on the gaps between a stream's events.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.perf.measure import CpuMeter, cpu_list, rss_bytes

TARGETS = ("direct", "ceiling", "gateway")
PROXIES = ("ceiling", "gateway")
LIMITED = "gateway, limits on"  # the same gateway, its requests made with a key whose limits and quotas are counted
CAPACITY_TARGET = 0.8  # gateway capacity / ceiling capacity
LATENCY_TARGET = 1.25  # gateway added p99 / ceiling added p99, at half the ceiling's capacity
DISTURBED = 0.25  # other jobs used this much of a core during a run or more: noted, a failure measured again
LATENCY_FLOOR_MS = 0.5  # added delays below this count as this much in the ratio (noise, not a cost)
HALF_ROUNDS = 3  # rounds of direct, ceiling and gateway at half the ceiling's capacity: the latency ratio takes medians
# Limits sized above the largest step, for the gateway and the ceiling alike: the defaults
# (litellm.max_connections 512, server.max_concurrency 1000) would cap N, not the CPU.
GATEWAY_CONFIG = "litellm:\n  sync_users: false\n  max_connections: 100000\nserver:\n  max_concurrency: 100000\n"


@dataclass
class StreamSettings:
    events_per_second: float = 30.0
    stream_seconds: float = 10.0  # one stream's length; users start spread over this long
    window_seconds: float = 8.0  # measured, after every user's first stream started
    settle_seconds: float = 1.0
    prompt_min_bytes: int = 8 * 1024
    prompt_max_bytes: int = 32 * 1024
    steps: tuple[int, ...] = (100, 250, 500, 1000, 2000, 4000)
    threshold_ms: float | None = None  # added p99 lateness; None: one event interval
    refine: int = 2  # bisections between a proxy's last pass and its first failure
    litellm: bool = True  # LiteLLM's own capacity, when it is installed (litellm_ladder)

    @classmethod
    def quick(cls) -> "StreamSettings":
        return cls(stream_seconds=4.0, window_seconds=3.0, settle_seconds=0.5, steps=(100, 300, 1000, 3000), refine=0)

    @property
    def gap_ms(self) -> float:
        return 1000.0 / self.events_per_second

    @property
    def threshold(self) -> float:
        return self.threshold_ms if self.threshold_ms is not None else round(self.gap_ms, 1)

    @property
    def events(self) -> int:
        return max(2, round(self.events_per_second * self.stream_seconds))


def log(message: str) -> None:
    print(f"[streams {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the maths (pure: tests/unit/test_perf_streams.py) -------------------------------------------


def measure_of(run: dict) -> str:
    """"lateness_ms", or "gap_ms" for a proxy that rewrites events and drops their due time (LiteLLM)."""
    return "lateness_ms" if run["lateness_ms"].get("p50") is not None else "gap_ms"


def added(run: dict, direct: dict, q: str) -> float | None:
    """A proxy's lateness percentile `q` ("p50", "p99") minus direct's at the same N, in ms
    (the gap between a stream's events instead, when the proxy's events carry no due time)."""
    measure = measure_of(run)
    mine, floor = run[measure].get(q), direct[measure].get(q)
    if mine is None or floor is None:
        return None
    return round(mine - floor, 3)


def passes(run: dict, direct: dict, threshold_ms: float) -> bool:
    """Within the threshold: added p99 at most threshold_ms, no errors, every stream delivering."""
    extra = added(run, direct, "p99")
    return (extra is not None and extra <= threshold_ms and not run["errors"]
            and run["events_in_window"] >= 0.9 * direct["events_in_window"])


def load_cores(direct: dict) -> float:
    """Cores the upstream and the generator used together in a direct run (both on CPU 0)."""
    return (direct["cpu"]["target_cpu_s"] + direct["generator_cpu_s"]) / direct["cpu"]["wall_s"]


def load_side_ok(direct: dict, threshold_ms: float) -> bool:
    """The upstream and the generator keep up on their own: no errors, 90% of the events due delivered,
    under 0.9 of their core. Not direct's p99: on a shared host, another job's stall moves that
    (the proxies' delays are measured against it, so it is the floor either way)."""
    return (not direct["errors"] and direct["events_in_window"] >= 0.9 * direct["expected_events_per_s"] * direct["window_s"]
            and load_cores(direct) < 0.9)


def capacity(runs: dict[int, dict[str, dict]], name: str, threshold_ms: float) -> dict[str, Any]:
    """Largest N where `name` passed, the smallest where it failed, and whether the load side ran out first."""
    # a step where the load side itself ran out says nothing about the proxy
    judged = {n: row for n, row in runs.items() if name in row and "direct" in row and load_side_ok(row["direct"], threshold_ms)}
    passed = [n for n, row in judged.items() if passes(row[name], row["direct"], threshold_ms)]
    failed = [n for n, row in judged.items() if not passes(row[name], row["direct"], threshold_ms)]
    best = max(passed, default=0)
    first_fail = min((n for n in failed if n > best), default=None)
    return {"streams": best, "first_failure": first_fail, "at_least": first_fail is None}


def unsaturated_cost(run: dict | None) -> float | None:
    """A run's CPU per stream-second, when its proxy had CPU to spare (under 0.9 of a core), else None."""
    if run is None or not run.get("cpu_ms_per_stream_s") or run.get("proxy_cores", 1) >= 0.9:
        return None
    return run["cpu_ms_per_stream_s"]


def per_core(cost: float) -> dict[str, Any]:
    """A CPU cost per stream-second (ms) and the streams one whole core carries at it."""
    return {"cpu_ms_per_stream_s": round(cost, 3), "streams_per_core": int(1000 / cost)}


def streams_per_core(runs: dict[int, dict[str, dict]], name: str) -> dict[str, Any] | None:
    """Streams one whole core would carry at `name`'s CPU cost per stream-second, the median over
    its own unsaturated runs (LiteLLM's, which has no ceiling run beside it at the same N)."""
    costs = sorted(c for row in runs.values() if (c := unsaturated_cost(row.get(name))) is not None)
    if not costs:
        return None
    return {**per_core(statistics.median(costs)), "runs": len(costs)}


def cpu_capacity(runs: dict[int, dict[str, dict]], more: tuple[int, list[dict[str, dict]]] | None = None) -> dict[str, Any] | None:
    """Streams per core by CPU cost, the ceiling's and the gateway's compared at the same N.

    At each N where both proxies ran unsaturated (under 0.9 of a core) and the load side kept up,
    the ratio ceiling cost / gateway cost per stream-second; the verdict is the median of those
    ratios. A proxy's cost per event falls as N grows (more events per loop wake-up), and the
    bisections add N near each proxy's own capacity, so medians over each proxy's own runs would
    compare different N. Each proxy's streams per core (1 core / its median cost) is taken over the
    same N. CPU time hardly depends on what else shares the machine, so this holds on a busy host
    where the latency ladder cannot. `more`: (N, rounds) measured there besides the row in `runs`
    (the rounds at half the ceiling's capacity after the first), each one more pair."""
    pairs = []
    rows = [(n, runs[n]) for n in sorted(runs)] + ([(more[0], row) for row in more[1][1:]] if more else [])
    for n, row in rows:
        c, g = unsaturated_cost(row.get("ceiling")), unsaturated_cost(row.get("gateway"))
        if c is None or g is None or "direct" not in row or not load_side_ok(row["direct"], 0.0):
            continue
        pairs.append({"streams": n, "ceiling": c, "gateway": g, "ratio": round(c / g, 3)})
    if not pairs:
        return None
    out: dict[str, Any] = {"pairs": pairs, "ratio": round(statistics.median(p["ratio"] for p in pairs), 3)}
    for name in PROXIES:
        out[name] = per_core(statistics.median(p[name] for p in pairs))
    return out


def half_latency(rounds: list[dict[str, dict]]) -> dict[str, Any] | None:
    """The latency ratio at half the ceiling's capacity, from rounds of (direct, ceiling, gateway) runs.

    Each round's added p99 is against that round's direct; a proxy's added p99 is the median over
    the rounds, and the ratio gateway / ceiling of those medians, added delays under
    LATENCY_FLOOR_MS counting as that much. A p99 of lateness is moved by any stall on the host:
    one pair of runs decided this verdict either way in runs minutes apart (docs/performance.md)."""
    per_round = []
    for row in rounds:
        if not all(t in row for t in TARGETS):
            continue
        per_round.append({name: added(row[name], row["direct"], "p99") for name in PROXIES})
    per_round = [r for r in per_round if None not in r.values()]
    if not per_round:
        return None
    medians = {name: round(statistics.median(r[name] for r in per_round), 3) for name in PROXIES}
    ratio = round(max(medians["gateway"], LATENCY_FLOOR_MS) / max(medians["ceiling"], LATENCY_FLOOR_MS), 3)
    return {"rounds": per_round, "median": medians, "ratio": ratio}


def rss_per_stream(runs: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per target, (RSS - RSS before the first run) / N at its largest N: resident memory does not
    shrink after a larger run (the allocator keeps it), so only the largest N is divided by itself."""
    out = {}
    for name in TARGETS + ("litellm",):
        sizes = [n for n, row in runs.items() if row.get(name, {}).get("rss_kib_per_stream") is not None
                 and "direct" in row and load_side_ok(row["direct"], 0.0)]  # else not all N streams were open
        if sizes:
            n = max(sizes)
            out[name] = {"streams": n, "kib_per_stream": runs[n][name]["rss_kib_per_stream"], "rss_mib": runs[n][name]["rss_mib"]}
    return out


def next_probe(low: int, high: int) -> int | None:
    """The geometric middle of (low, high), or None when they are within 10% of each other."""
    if low <= 0 or high <= low * 1.1:
        return None
    middle = int(round(math.sqrt(low * high) / 10.0)) * 10 or low + 1
    return middle if low < middle < high else None


def limits_cost(runs: dict[int, dict[str, dict]], threshold_ms: float) -> list[dict[str, Any]]:
    """Per N where the limits-on row ran: its CPU per stream-second and per event against the gateway's
    (limits off: the same process) at the same N, the ratio and the difference, its added delays and errors."""
    out = []
    for n in sorted(runs):
        row = runs[n]
        on, off, direct = row.get(LIMITED), row.get("gateway"), row.get("direct")
        if on is None or off is None or direct is None:
            continue
        c_on, c_off = on.get("cpu_ms_per_stream_s"), off.get("cpu_ms_per_stream_s")
        out.append({
            "streams": n,
            "cpu_ms_per_stream_s": {"off": c_off, "on": c_on},
            "ratio": round(c_on / c_off, 3) if c_on and c_off else None,
            "difference_ms": round(c_on - c_off, 3) if c_on is not None and c_off is not None else None,
            "cpu_us_per_event": {"off": off.get("cpu_us_per_event"), "on": on.get("cpu_us_per_event")},
            "added_p99_ms": {"off": added(off, direct, "p99"), "on": added(on, direct, "p99")},
            "errors": sum(on["errors"].values()),
            "within": passes(on, direct, threshold_ms),
        })
    return out


def summarise(runs: dict[int, dict[str, dict]], settings: StreamSettings, half: int | None,
              half_rounds: list[dict[str, dict]] | None = None) -> dict[str, Any]:
    """Capacities, the ratios and their verdicts, from the runs (N -> target -> generator result + meters)
    and the rounds at half the ceiling's capacity (when not given: that N's row in `runs`, one round)."""
    threshold = settings.threshold
    caps = {name: capacity(runs, name, threshold) for name in PROXIES}
    out: dict[str, Any] = {"threshold_ms": threshold, "capacity": caps, "half_ceiling_streams": half}
    ceiling_cap, gateway_cap = caps["ceiling"]["streams"], caps["gateway"]["streams"]
    ratio = round(gateway_cap / ceiling_cap, 3) if ceiling_cap else None
    out["capacity_ratio"] = ratio
    out["capacity_met"] = None if ratio is None else ratio >= CAPACITY_TARGET
    by_cpu = cpu_capacity(runs, (half, half_rounds) if half and half_rounds else None)
    out["cpu_capacity"] = by_cpu
    out["cpu_capacity_ratio"] = by_cpu["ratio"] if by_cpu else None
    out["cpu_capacity_met"] = None if by_cpu is None else by_cpu["ratio"] >= CAPACITY_TARGET
    if half and half_rounds is None and half in runs:
        half_rounds = [runs[half]]
    latency = half_latency(half_rounds or []) if half else None
    out["half_latency"] = latency
    if latency is not None:
        out["half_added_p99_ms"] = latency["median"]
        out["latency_ratio"] = latency["ratio"]
        out["latency_met"] = latency["ratio"] <= LATENCY_TARGET
    out.setdefault("latency_ratio", None)
    out.setdefault("latency_met", None)
    out["limits_cost"] = limits_cost(runs, threshold)
    return out


def rss_cell(run: dict) -> str:
    """RSS per stream; "<= x" when the process had served a larger N before (its resident memory
    does not shrink, so the number is an upper bound)."""
    if run.get("rss_kib_per_stream") is None:
        return "-"
    return ("<= " if run.get("rss_after_larger_n") else "") + f"{run['rss_kib_per_stream']:.0f}"


def table_rows(runs: dict[int, dict[str, dict]], threshold_ms: float,
               names: tuple[str, ...] = (*TARGETS, LIMITED)) -> list[list[str]]:
    """One markdown row per (N, target)."""

    def ms(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+.1f}" if signed else f"{value:.1f}"

    rows = []
    for n in sorted(runs):
        row = runs[n]
        direct = row.get("direct")
        for name in names:
            run = row.get(name)
            if run is None:
                continue
            late = run["lateness_ms"]
            if name == "direct":
                extra = f"(own {ms(late['p50'])} / {ms(late['p99'])})"
                verdict = (f"load side ok ({load_cores(run):.2f} core)" if load_side_ok(run, threshold_ms)
                           else f"**load side saturated** ({load_cores(run):.2f} core)")
            else:
                assert direct is not None
                extra = f"{ms(added(run, direct, 'p50'), True)} / {ms(added(run, direct, 'p99'), True)}"
                if measure_of(run) == "gap_ms":
                    extra += " (gaps)"
                verdict = "within" if passes(run, direct, threshold_ms) else "**over**"
            errors = sum(run["errors"].values())
            rows.append([
                f"{n:,}", name, extra, f"{ms(run['ttfb_ms']['p50'])} / {ms(run['ttfb_ms']['p99'])}",
                f"{run['events_per_s']:,.0f} / {run['expected_events_per_s']:,.0f}",
                "-" if run.get("cpu_ms_per_stream_s") is None else f"{run['cpu_ms_per_stream_s']:.2f}",
                "-" if run.get("cpu_us_per_event") is None else f"{run['cpu_us_per_event']:.0f}",
                rss_cell(run),
                f"{run['generator_us_per_event'] or 0:.1f}",
                str(errors) if errors else "0",
                verdict,
            ])
    return rows


def markdown(llm: dict) -> str:
    """The LLM-shaped section of the bench's report."""
    s, summary = llm["settings"], llm["summary"]
    runs = {int(n): row for n, row in llm["runs"].items()}
    lines = [
        "### LLM-shaped load: concurrent streams per worker",
        "",
        f"Each stream: {s['events_per_second']:g} events/s for {s['stream_seconds']:g} s, prompts "
        f"{s['prompt_min_bytes'] // 1024}-{s['prompt_max_bytes'] // 1024} KB, a closed loop of N users (users start "
        f"spread over one stream's length); {s['window_seconds']:g} s measured per run. Lateness = event arrival - "
        f"the time the upstream was due to send it; added = the proxy's minus direct's at the same N. Threshold: "
        f"added p99 <= {summary['threshold_ms']:g} ms (one event interval). Proxy alone on CPU 1; upstream and "
        f"generator on CPU 0. CPU and RSS of the proxy (for direct: the upstream) over the window; RSS per stream "
        f"= (RSS - RSS before the first run) / N.",
        "",
        "| N | row | added lateness p50 / p99 (ms) | TTFB p50 / p99 (ms) | events/s got / due | CPU ms per stream-s | CPU us/event | RSS KiB/stream | generator us/event | errors | |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(runs, summary["threshold_ms"])]
    caps = summary["capacity"]

    def cap(name: str) -> str:
        c = caps[name]
        if c["at_least"]:
            return f">= {c['streams']:,} (the load side, not the proxy, ran out past it)" if c["streams"] else "not reached"
        return f"{c['streams']:,} (over at {c['first_failure']:,})"

    lines += ["", f"Capacity (largest N within the threshold): ceiling {cap('ceiling')}, gateway {cap('gateway')}."]
    by_cpu = summary["cpu_capacity"]
    if by_cpu:
        shared = ", ".join(f"{p['streams']:,}" for p in by_cpu["pairs"])  # an N twice: a round at half capacity
        lines.append(f"Streams per core by CPU cost (1 core / median CPU per stream-second, over the N where both proxies "
                     f"ran unsaturated: {shared}): "
                     f"ceiling {by_cpu['ceiling']['streams_per_core']:,}, gateway {by_cpu['gateway']['streams_per_core']:,}.")
    latency = summary.get("half_latency")
    if latency is not None and len(latency["rounds"]) > 1:
        lines.append(f"At half the ceiling's capacity ({summary['half_ceiling_streams']:,} streams), {len(latency['rounds'])} "
                     "rounds of direct, ceiling and gateway (the table shows the first); added p99 per round: " + "; ".join(
                         f"{name} " + ", ".join(f"{r[name]:+.1f}" for r in latency["rounds"]) + f" (median {latency['median'][name]:+.1f})"
                         for name in PROXIES) + " ms.")
    lines += limits_lines(llm)
    disturbed = [f"{n:,} {name} ({run['cpu']['foreign_load']:.2f})" for n, row in sorted(runs.items())
                 for name, run in row.items() if run.get("disturbed")]
    if disturbed:
        lines.append(f"Runs during which other jobs used {DISTURBED} of a core or more (cores): {', '.join(disturbed)}.")
    lite = llm.get("litellm")
    if lite:
        lite_runs = {int(n): row for n, row in lite["runs"].items()}
        lines += ["", f"LiteLLM {lite['version']} in front of the same paced upstream (it rewrites every event, so its "
                  "events carry no due time: its added delay is measured on the gaps between a stream's events, against "
                  "direct's gaps):", "",
                  "| N | row | added delay p50 / p99 (ms) | TTFB p50 / p99 (ms) | events/s got / due | CPU ms per stream-s | CPU us/event | RSS KiB/stream | generator us/event | errors | |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(lite_runs, summary["threshold_ms"], ("direct", "litellm"))]
        c = lite["capacity"]
        lines += ["", f"LiteLLM capacity: {c['streams']:,}" + (f" (over at {c['first_failure']:,})" if c["first_failure"] else
                  " (the largest step tried)") + "."]
    for note in llm.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def limits_measured(costs: list[dict]) -> str:
    """The limits-on row's stated cost: CPU per stream-second on vs off, per N it ran at."""
    parts = []
    for c in costs:
        cpu, us = c["cpu_ms_per_stream_s"], c["cpu_us_per_event"]
        part = f"{cpu['on']:.2f} vs {cpu['off']:.2f} ms at {c['streams']:,} streams"
        if c["ratio"] is not None:
            part += f" ({c['ratio']:.2f}x, {c['difference_ms']:+.2f} ms"
            part += f"; {us['on']:.0f} vs {us['off']:.0f} us per event)" if us["on"] is not None and us["off"] is not None else ")"
        parts.append(part)
    errors = sum(c["errors"] for c in costs)
    return "; ".join(parts) + (f"; **{errors:,} errors**: requests refused or failed, so not the cost of counting"
                               if errors else "; 0 errors")


def limits_lines(llm: dict) -> list[str]:
    """The markdown's paragraph on the limits-on row (none when it did not run)."""
    costs = llm["summary"].get("limits_cost")
    if not costs:
        return []
    limits = llm.get("limits", {})
    key, sub = limits.get("key", {}), limits.get("subscription", {})
    what = (f"an rpm limit of {key['rpm_limit']:,} and a tpm limit of {key['tpm_limit']:,}, and quotas on its subscriptions "
            f"of {sub['quota_requests']:,} requests and {sub['quota_tokens']:,} tokens" if key and sub else "limits and quotas")
    charged = [run["quota_charged"] for row in llm["runs"].values() for name, run in row.items()
               if name == LIMITED and run.get("quota_charged")]
    line = (f"Limits on (`{LIMITED}`: the same gateway process, its requests made with a key with {what}: each request "
            "admitted in one Redis round trip and settled after the answer, its tokens charged from the stream's usage, "
            f"none refused), CPU per stream-second limits on vs off at the same N: {limits_measured(costs)}.")
    if charged:
        line += (f" The subscription's quota counters charged {sum(c['requests'] for c in charged):,} requests and "
                 f"{sum(c['tokens'] for c in charged):,} tokens over those runs.")
    return [line]


def targets(llm: dict) -> list[dict]:
    """The bench's target rows for this scenario."""
    summary = llm["summary"]
    caps = summary["capacity"]
    out = []
    ratio = summary["capacity_ratio"]
    measured = (f"{ratio:.2f} ({caps['gateway']['streams']:,} / {caps['ceiling']['streams']:,} streams)"
                if ratio is not None else "not measured")
    if ratio is not None and (caps["ceiling"]["at_least"] or caps["gateway"]["at_least"]):
        measured += "; the load side ran out first, so a capacity is a lower bound"
    out.append({"target": "LLM-shaped: stream capacity vs ceiling", "goal": f">= {CAPACITY_TARGET:.2f}",
                "measured": measured, "met": summary["capacity_met"]})
    half = summary.get("half_added_p99_ms")
    lat = summary["latency_ratio"]
    by_cpu, cpu_ratio = summary["cpu_capacity"], summary["cpu_capacity_ratio"]
    if cpu_ratio is not None:
        pairs = ", ".join(f"{p['ratio']:.2f}" for p in by_cpu["pairs"])
        measured = (f"{cpu_ratio:.2f}, the median of the ratios of {len(by_cpu['pairs'])} runs of both at the same N, unsaturated ({pairs}); "
                    f"{by_cpu['gateway']['streams_per_core']:,} / {by_cpu['ceiling']['streams_per_core']:,} streams per core "
                    f"({by_cpu['gateway']['cpu_ms_per_stream_s']:.2f} / {by_cpu['ceiling']['cpu_ms_per_stream_s']:.2f} ms CPU "
                    "per stream-second, medians over those N)")
    else:
        measured = "not measured"
    out.append({"target": "LLM-shaped: streams per core vs ceiling (CPU per stream-second)", "goal": f">= {CAPACITY_TARGET:.2f}",
                "measured": measured, "met": summary["cpu_capacity_met"]})
    if lat is not None and half:
        latency = summary["half_latency"]
        each = "; ".join(f"{name} " + ", ".join(f"{r[name]:+.2f}" for r in latency["rounds"]) for name in reversed(PROXIES))
        measured = (f"{lat:.2f}x ({half['gateway']:+.2f} vs {half['ceiling']:+.2f} ms at {summary['half_ceiling_streams']:,} "
                    f"streams, the medians of {len(latency['rounds'])} rounds: {each}; below {LATENCY_FLOOR_MS} ms counts as "
                    f"{LATENCY_FLOOR_MS})")
    else:
        measured = "not measured"
    out.append({"target": "LLM-shaped: added chunk delay p99 at half the ceiling's capacity",
                "goal": f"<= {LATENCY_TARGET:.2f}x the ceiling's", "measured": measured, "met": summary["latency_met"]})
    rss = llm.get("rss", {})
    if rss.get("gateway"):
        measured = f"{rss['gateway']['kib_per_stream']:.0f} KiB at {rss['gateway']['streams']:,} streams"
        if rss.get("ceiling"):
            measured += f" (the ceiling: {rss['ceiling']['kib_per_stream']:.0f} KiB at {rss['ceiling']['streams']:,})"
    else:
        measured = "not measured"
    out.append({"target": "LLM-shaped: RSS per open stream (gateway)", "goal": "stated", "measured": measured,
                "met": True if rss.get("gateway") else None})
    costs = summary.get("limits_cost")
    errors = sum(c["errors"] for c in costs or [])
    out.append({"target": "LLM-shaped: cost of limits and quotas (CPU per stream-second, limits on vs off)", "goal": "stated",
                "measured": limits_measured(costs) if costs else "not measured",
                "met": True if costs and not errors else None})
    return out


# -- running it ------------------------------------------------------------------------------


class Scenario:
    """The ladder, on processes a Bench (tests/perf/bench.py) runs: ceiling and gateway are started here."""

    def __init__(self, bench: Any, settings: StreamSettings, upstream: subprocess.Popen, upstream_port: int,
                 gateway_env: dict[str, str], key: str, limited: tuple[str, str] | None = None) -> None:
        """`limited`: (key, its user id) for the limits-on row, a key whose limits and quotas the gateway counts."""
        self.bench = bench
        self.s = settings
        self.upstream = upstream
        self.ports: dict[str, int] = {"direct": upstream_port}
        self.pids: dict[str, int] = {"direct": upstream.pid}
        self.gateway_env = gateway_env
        self.key = key
        self.limited = limited
        self.baseline_rss: dict[str, int] = {}
        self.largest: dict[int, int] = {}  # pid -> the largest N it served so far
        self.runs: dict[int, dict[str, dict]] = {}
        self.half_rounds: list[dict[str, dict]] = []  # rounds at half the ceiling's capacity (the latency ratio)
        self.notes: list[str] = []

    def start(self) -> None:
        from tests.perf import bench as b

        port = b.free_port()
        ceiling = self.bench.spawn(
            "llm-ceiling",
            [str(b.BIN / "uvicorn"), "tests.perf.ceiling:app", "--host", "127.0.0.1", "--port", str(port), "--loop",
             "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
             "--no-server-header"],
            b.PROXY_CPUS, env=dict(os.environ, CEILING_UPSTREAM=f"http://127.0.0.1:{self.ports['direct']}",
                                   CEILING_MAX_CONNECTIONS="100000"),
        )
        self.bench.wait_http(ceiling, port, "POST", b.PATH, {"content-type": "application/json"}, b.PLAIN_BODY)
        self.ports["ceiling"], self.pids["ceiling"] = port, ceiling.pid
        gateway, gw_port = self.bench.start_gateway("llm-gateway", self.gateway_env, b.PROXY_CPUS, workers=1,
                                                    key=self.key, config_text=GATEWAY_CONFIG)
        self.ports["gateway"], self.pids["gateway"] = gw_port, gateway.pid
        self.procs = [ceiling, gateway]
        warm: tuple[str, ...] = TARGETS
        if self.limited:
            self.ports[LIMITED], self.pids[LIMITED] = gw_port, gateway.pid
            warm = ("direct", "ceiling", LIMITED, "gateway")  # its counters made (and seeded) before the gateway's baseline
        for name in warm:
            self.one(name, 20, warm=True)  # first connections, imports, pools: out of the baseline
            self.baseline_rss[name] = rss_bytes(self.pids[name])
        if self.limited:
            self.baseline_rss[LIMITED] = self.baseline_rss["gateway"]  # one process
            if self.quota_counters() == (0, 0):
                raise RuntimeError(f"{LIMITED}: the warm-up charged no quota counter: the key's quotas are not counted")

    def stop(self) -> None:
        for proc in getattr(self, "procs", []):
            self.bench.stop(proc)

    def quota_counters(self) -> tuple[int, int]:
        """The limits-on key's subscription quota counters in Redis (requests, tokens), summed over models and periods."""
        import redis

        assert self.limited is not None
        client = redis.Redis.from_url(self.gateway_env["REDIS_URL"])
        try:
            totals = []
            for kind in ("req", "tok"):
                names = list(client.scan_iter(f"maas:lim:{{u:{self.limited[1]}}}:sub:*:{kind}:*"))
                totals.append(sum(int(float(v)) for v in client.mget(names) if v is not None) if names else 0)
        finally:
            client.close()
        return totals[0], totals[1]

    def plan(self, name: str, streams: int, warm: bool) -> dict:
        s = self.s
        key = self.limited[0] if name == LIMITED and self.limited else self.key
        headers = [("authorization", f"Bearer {key}"), ("x-bench-events", str(s.events)),
                   ("x-bench-gap-ms", f"{s.gap_ms:.3f}")]
        return {
            "host": "127.0.0.1", "port": self.ports[name], "path": "/v1/chat/completions", "streams": streams,
            "ramp_s": 1.0 if warm else s.stream_seconds, "settle_s": s.settle_seconds,
            "window_s": 1.0 if warm else s.window_seconds, "events": s.events, "gap_ms": s.gap_ms,
            "prompt_min_bytes": s.prompt_min_bytes, "prompt_max_bytes": s.prompt_max_bytes, "model": "gpt-4o-mini",
            "headers": headers,
        }

    def idle(self, pid: int, timeout: float = 20.0) -> None:
        """Wait until the proxy has let go of the previous run's streams (under 5% of a core)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with CpuMeter([pid]) as meter:
                time.sleep(0.3)
            if meter.sample.target_s / meter.sample.wall < 0.05:
                return

    def quiet(self, wait: float = 5.0) -> None:
        """Up to `wait` seconds for other jobs on the machine to stop (each run records how busy it was anyway)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with CpuMeter([]) as meter:
                time.sleep(0.3)
            if meter.sample.foreign_s / meter.sample.wall < 0.1:
                return

    def one(self, name: str, streams: int, warm: bool = False) -> dict:
        """One run of the generator against `name`: its results plus the proxy's CPU and RSS over the window."""
        from tests.perf import bench as b

        pid = self.pids[name]
        self.idle(pid)
        if not warm:
            self.quiet()
        counted = self.quota_counters() if name == LIMITED else None
        argv = ["taskset", "-c", cpu_list(b.LOAD_CPUS), sys.executable, "-m", "tests.perf.streamload",
                json.dumps(self.plan(name, streams, warm))]
        proc = subprocess.Popen(argv, cwd=b.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        meter = upstream_meter = None
        result: dict | None = None
        rss = 0
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("window-start"):
                    meter = CpuMeter([pid]).__enter__()
                    upstream_meter = CpuMeter([self.pids["direct"]]).__enter__() if name != "direct" else None
                elif line.startswith("window-end") and meter is not None:
                    meter.__exit__(None, None, None)
                    if upstream_meter is not None:
                        upstream_meter.__exit__(None, None, None)
                    rss = rss_bytes(pid)
                elif line.startswith("result "):
                    result = json.loads(line.removeprefix("result "))
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if result is None or meter is None:
            raise RuntimeError(f"stream generator failed ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        cpu = meter.sample
        stream_seconds = streams * cpu.wall
        result["cpu"] = cpu.as_dict()
        result["disturbed"] = cpu.foreign_s / cpu.wall >= DISTURBED
        result["cpu_ms_per_stream_s"] = round(cpu.target_s * 1000 / stream_seconds, 3)
        result["cpu_us_per_event"] = round(cpu.target_s * 1e6 / result["events_in_window"], 1) if result["events_in_window"] else None
        result["proxy_cores"] = round(cpu.target_s / cpu.wall, 3)
        if upstream_meter is not None:
            result["upstream_cores"] = round(upstream_meter.sample.target_s / upstream_meter.sample.wall, 3)
        result["rss_mib"] = round(rss / 2**20, 1)
        if name in self.baseline_rss:
            result["rss_kib_per_stream"] = round((rss - self.baseline_rss[name]) / 1024 / streams, 1)
        if not warm:
            if self.largest.get(pid, 0) > streams:
                result["rss_after_larger_n"] = self.largest[pid]  # RSS per stream is then an upper bound
            self.largest[pid] = max(self.largest.get(pid, 0), streams)
        if counted is not None:
            after = self.quota_counters()  # charged over the whole run: ramp, settle and window (tokens: settled ones)
            result["quota_charged"] = {"requests": after[0] - counted[0], "tokens": after[1] - counted[1]}
        if not warm:
            late, ttfb = result["lateness_ms"], result["ttfb_ms"]
            log(f"  {streams:>5} {name:8} lateness p50 {late['p50']} p99 {late['p99']} ms, ttfb p50 {ttfb['p50']} p99 "
                f"{ttfb['p99']} ms, {result['events_per_s']:,.0f}/{result['expected_events_per_s']:,.0f} events/s, "
                f"{result['proxy_cores']} cores, {result['cpu_us_per_event']} us/event, RSS {result['rss_mib']} MiB, "
                f"generator {result['generator_us_per_event']} us/event, errors {result['errors'] or 0}"
                + (f", foreign load {cpu.foreign_s / cpu.wall:.2f}" if result["disturbed"] else ""))
        return result

    def step(self, streams: int, names: tuple[str, ...]) -> dict[str, dict]:
        """Direct and the named proxies at N, side by side (the order turns each step)."""
        row = self.runs.setdefault(streams, {})
        order = ["direct", *names]
        if len(self.runs) % 2 == 0:
            order.reverse()
        for name in order:
            row[name] = self.one(name, streams)
        # A failure while other jobs had the CPU is measured once more and the better run kept:
        # their load only ever adds delay, so the lower of two is the nearer to the row's own.
        threshold = self.s.threshold
        if (row["direct"]["lateness_ms"]["p99"] or 1e9) > threshold and row["direct"]["disturbed"]:
            again = self.one("direct", streams)
            if (again["lateness_ms"]["p99"] or 1e9) < (row["direct"]["lateness_ms"]["p99"] or 1e9):
                row["direct"] = again
        for name in names:
            if not passes(row[name], row["direct"], threshold) and row[name]["disturbed"]:
                again = self.one(name, streams)
                if (added(again, row["direct"], "p99") or 1e9) < (added(row[name], row["direct"], "p99") or 1e9):
                    row[name] = again
        return row

    def ladder(self) -> dict[str, Any]:
        s = self.s
        threshold = s.threshold
        alive = list(PROXIES)
        for n in s.steps:
            row = self.step(n, tuple(alive))
            if not load_side_ok(row["direct"], threshold):
                self.notes.append(f"at {n:,} streams the upstream and generator on CPU 0 ran out on their own "
                                  f"({load_cores(row['direct']):.2f} of a core, {row['direct']['events_per_s']:,.0f} of "
                                  f"{row['direct']['expected_events_per_s']:,.0f} events/s): the ladder stops there")
                break
            alive = [p for p in alive if passes(row[p], row["direct"], threshold)]
            if not alive:
                break
        for name in PROXIES:
            for _ in range(s.refine):
                cap = capacity(self.runs, name, threshold)
                if cap["first_failure"] is None:
                    break
                probe = next_probe(cap["streams"], cap["first_failure"])
                if probe is None:
                    break
                row = self.runs.get(probe, {})
                if "direct" not in row or name not in row:
                    self.step(probe, (name,))
        summary = summarise(self.runs, s, None)
        half = summary["capacity"]["ceiling"]["streams"] // 2
        if half >= 10:
            half = int(round(half / 10.0)) * 10
            log(f"half the ceiling's capacity: {half:,} streams, side by side, {HALF_ROUNDS} rounds")
            self.half_rounds = self.rounds(half)
            summary = summarise(self.runs, s, half, self.half_rounds)
        if self.limited:
            self.limits_on(summary)
            summary = summarise(self.runs, s, summary["half_ceiling_streams"], self.half_rounds or None)
        return summary

    def rounds(self, n: int) -> list[dict[str, dict]]:
        """HALF_ROUNDS rounds of direct, ceiling and gateway at N, the order turned each round; the
        ladder's row at N, when it made one, is the first. Every run is kept: the verdict takes medians."""
        first = self.runs.get(n, {})
        out = [dict(first)] if all(t in first for t in TARGETS) else []
        while len(out) < HALF_ROUNDS:
            turn = (len(out) + len(self.runs)) % len(TARGETS)
            order = TARGETS[turn:] + TARGETS[:turn]
            out.append({name: self.one(name, n) for name in order})
        self.runs[n] = {**self.runs.get(n, {}), **out[0]}  # the table shows the first round
        return out

    def limits_on(self, summary: dict[str, Any]) -> None:
        """The limits-on row at half the ceiling's capacity and at the gateway's capacity (the largest N it
        was within), beside the gateway's runs there: two N, not every step. A failure under other jobs'
        load is measured once more, the better run kept, as in `step`."""
        threshold = self.s.threshold
        sizes = sorted({n for n in (summary["half_ceiling_streams"], summary["capacity"]["gateway"]["streams"])
                        if n and "gateway" in self.runs.get(n, {}) and "direct" in self.runs.get(n, {})})
        if not sizes:
            self.notes.append(f"{LIMITED}: not measured (no N where the gateway was within)")
        for n in sizes:
            log(f"{LIMITED} at {n:,} streams")
            row = self.runs[n]
            row[LIMITED] = self.one(LIMITED, n)
            if not passes(row[LIMITED], row["direct"], threshold) and row[LIMITED]["disturbed"]:
                again = self.one(LIMITED, n)
                if (added(again, row["direct"], "p99") or 1e9) < (added(row[LIMITED], row["direct"], "p99") or 1e9):
                    row[LIMITED] = again

    def limits_settings(self) -> dict[str, Any]:
        """What the limits-on key carries (tests/perf/bench.py `seed`), for the report; {} without that row."""
        from tests.perf import bench as b

        if not self.limited:
            return {}
        return {"key": {"rpm_limit": b.HIGH_LIMIT, "tpm_limit": b.HIGH_LIMIT},
                "subscription": {"quota_requests": b.HIGH_LIMIT, "quota_tokens": b.HIGH_QUOTA}}

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        log(f"LLM-shaped load: {self.s.events_per_second:g} events/s for {self.s.stream_seconds:g} s per stream, "
            f"threshold {self.s.threshold:g} ms added p99; steps {', '.join(map(str, self.s.steps))}")
        self.start()
        try:
            summary = self.ladder()
        finally:
            self.stop()
        out = {
            "settings": {**asdict(self.s), "threshold_ms": self.s.threshold, "gap_ms": round(self.s.gap_ms, 3),
                         "events": self.s.events},
            "runs": {str(n): row for n, row in sorted(self.runs.items())},
            "half_rounds": self.half_rounds,
            "summary": summary,
            "limits": self.limits_settings(),
            "baseline_rss_mib": {k: round(v / 2**20, 1) for k, v in self.baseline_rss.items()},
            "notes": self.notes + [litellm_note()],
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        if self.s.litellm:
            if importlib.util.find_spec("litellm") is None:  # not imported here: it would fetch its price list
                out["notes"].append("LiteLLM not installed: no LiteLLM rows")
            else:
                out["litellm"] = litellm_ladder(self.bench, self.s)
                out["wall_seconds"] = round(time.perf_counter() - started, 1)
        out["rss"] = rss_per_stream(self.runs)
        if out["rss"].get("gateway"):
            out["rss_kib_per_stream"] = out["rss"]["gateway"]["kib_per_stream"]
            out["rss_streams"] = out["rss"]["gateway"]["streams"]
        c, g = summary["capacity"]["ceiling"], summary["capacity"]["gateway"]
        log(f"capacity: ceiling {c['streams']:,}, gateway {g['streams']:,} (ratio {summary['capacity_ratio']}); added p99 at "
            f"half the ceiling's: {summary.get('half_added_p99_ms')} (ratio {summary['latency_ratio']}); "
            f"{out['wall_seconds']:.0f} s")
        if summary["limits_cost"]:
            log(f"{LIMITED}, CPU per stream-second on vs off: {limits_measured(summary['limits_cost'])}")
        return out


def repeated(scenario: Scenario, streams: int, repeat: int, names: tuple[str, ...]) -> list[dict[str, dict]]:
    """`--at N`: the named targets at one N, `repeat` rounds (the order turned each round), each run
    printed as it ends and a summary per target: how much one N's numbers move from run to run."""
    rounds = []
    for index in range(repeat):
        order = names if index % 2 == 0 else tuple(reversed(names))
        rounds.append({name: scenario.one(name, streams) for name in order})
    for name in names:
        runs = [r[name] for r in rounds]
        late = [f"{r['lateness_ms']['p50']}/{r['lateness_ms']['p99']}/{r['lateness_ms']['p99.9']}" for r in runs]
        log(f"{name:8} at {streams:,}: lateness p50/p99/p99.9 (ms) {', '.join(late)}; CPU us/event "
            f"{', '.join(str(r['cpu_us_per_event']) for r in runs)}; cores {', '.join(str(r['proxy_cores']) for r in runs)}")
    return rounds


LITELLM_STEPS = (10, 25, 50, 100, 200, 400)


def litellm_ladder(bench: Any, settings: StreamSettings) -> dict[str, Any]:
    """LiteLLM's own capacity on the same load, in front of the same paced upstream.

    Its mock models cannot do this (mock_response streams every chunk at once; mock_delay
    only delays the start), so LiteLLM gets a real OpenAI-compatible backend: a second fake
    upstream whose every stream is LLM-shaped (LiteLLM does not forward x-bench-* headers).
    """
    from gateway.dev import services as devservices
    from tests.perf import bench as b

    port = b.free_port()
    upstream = bench.spawn("llm-upstream-paced", [sys.executable, "-m", "tests.perf.upstream", str(port), str(settings.events),
                                                  f"{settings.gap_ms:.3f}"], b.LOAD_CPUS)
    bench.wait_http(upstream, port, "GET", "/health/liveliness")
    config = bench.work / "litellm-streams.yaml"
    config.write_text("model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
                      f"      api_base: http://127.0.0.1:{port}/v1\n      api_key: sk-fake\n")
    log("LiteLLM in front of the paced upstream")
    with b.pinned(b.PROXY_CPUS):
        service = devservices.start_litellm(config, bench.work / "litellm-streams", master_key=b.LITELLM_MASTER_KEY)
    scenario = Scenario(bench, settings, upstream, port, {}, b.LITELLM_MASTER_KEY)
    threshold = settings.threshold
    try:
        scenario.ports["litellm"], scenario.pids["litellm"] = service.port, service.process.pid
        for name in ("direct", "litellm"):
            scenario.one(name, 5, warm=True)
            scenario.baseline_rss[name] = rss_bytes(scenario.pids[name])
        for n in LITELLM_STEPS:
            row = scenario.step(n, ("litellm",))
            if not passes(row["litellm"], row["direct"], threshold):
                break
    finally:
        service.stop()
        bench.stop(upstream)
    return {
        "version": importlib.metadata.version("litellm"),
        "runs": {str(n): row for n, row in sorted(scenario.runs.items())},
        "capacity": capacity(scenario.runs, "litellm", threshold),
        "cpu_capacity": streams_per_core(scenario.runs, "litellm"),
    }


def litellm_note() -> str:
    return ("LiteLLM's mock models cannot pace a stream (mock_response streams every chunk at once; mock_delay delays "
            "only the start): LiteLLM is measured in front of a paced fake upstream instead, when it runs")


def main(argv: list[str] | None = None) -> int:
    from gateway.dev import services as devservices
    from tests.perf import bench as b
    from tests.perf import report

    parser = argparse.ArgumentParser(prog="python -m tests.perf.streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s streams, 3 s windows, no refinement")
    parser.add_argument("--steps", help="comma-separated stream counts")
    parser.add_argument("--threshold-ms", type=float)
    parser.add_argument("--refine", type=int)
    parser.add_argument("--events-per-second", type=float)
    parser.add_argument("--stream-seconds", type=float)
    parser.add_argument("--window-seconds", type=float)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--litellm-only", action="store_true", help="only LiteLLM's ladder (and direct)")
    parser.add_argument("--at", type=int, help="no ladder: run the targets at this N, --repeat times each")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--targets", default=",".join(TARGETS), help="with --at: which of " + ", ".join(TARGETS))
    args = parser.parse_args(argv)
    settings = StreamSettings.quick() if args.quick else StreamSettings()
    settings.litellm = not args.no_litellm
    if args.steps:
        settings.steps = tuple(int(x) for x in args.steps.split(","))
    for name in ("threshold_ms", "refine", "events_per_second", "stream_seconds", "window_seconds"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if len(os.sched_getaffinity(0)) < 2:
        print("streams: needs 2 CPUs", file=sys.stderr)
        return 2

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanups below

    signal.signal(signal.SIGTERM, terminated)
    with tempfile.TemporaryDirectory(prefix="maas-streams-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        bench = b.Bench(b.Settings(keys=0, cold_keys=0, revocation_trials=0), work)
        os.sched_setaffinity(0, b.LOAD_CPUS)
        postgres = devservices.start_postgres(work / "pg")
        redis = devservices.start_redis(work / "redis")
        try:
            seeded = asyncio.run(b.seed(postgres.url, bench.s))
            port = b.free_port()
            upstream = bench.spawn("upstream", [sys.executable, "-m", "tests.perf.upstream", str(port)], b.LOAD_CPUS)
            bench.wait_http(upstream, port, "GET", "/health/liveliness")
            env = {**os.environ, "DATABASE_URL": postgres.url, "REDIS_URL": redis.url,
                   "LITELLM_URL": f"http://127.0.0.1:{port}", "LITELLM_API_KEY": b.SERVICE_KEY}
            if args.litellm_only:
                print(json.dumps(litellm_ladder(bench, settings), indent=2))
                return 0
            if args.at:
                scenario = Scenario(bench, settings, upstream, port, env, seeded.key)
                scenario.start()
                try:
                    repeated(scenario, args.at, args.repeat, tuple(args.targets.split(",")))
                finally:
                    scenario.stop()
                return 0
            llm = Scenario(bench, settings, upstream, port, env, seeded.key, limited=(seeded.quota_key, seeded.quota_user)).run()
        finally:
            bench.stop_all()
            redis.stop()
            postgres.stop()
    llm["meta"] = report.machine()
    b.RESULTS.mkdir(exist_ok=True)
    (b.RESULTS / "streams-latest.json").write_text(json.dumps(llm, indent=2) + "\n")
    text = markdown(llm) + "\n" + "\n".join(
        f"- {t['target']}: {t['measured']} (goal {t['goal']}): "
        f"{'met' if t['met'] else 'NOT met' if t['met'] is False else 'n/a'}" for t in targets(llm)) + "\n"
    (b.RESULTS / "streams-latest.md").write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
