"""Measuring: CPU time from /proc, wrk runs, percentiles, process pinning.

CPU per request = (utime + stime of the measured processes and their children, from
/proc/<pid>/stat) / requests. Every wrk run also records how busy each core was and how
much of that was not ours (anything outside this harness's process tree: another job on
the machine), so a disturbed run is visible in the results instead of silently skewing them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CLK_TCK = os.sysconf("SC_CLK_TCK")

# wrk: one line of JSON at the end of a run, in microseconds.
WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""

# The same request every time: wrk's fast path (no Lua per request).
WRK_FIXED = r"""
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
""" + WRK_DONE

# A different key per request, in the order of a file, starting over after the last
# (the caller stops wrk with SIGINT once the gateway has cached them all).
WRK_KEYS = r"""
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS_FILE")) do keys[#keys + 1] = line end
local body = os.getenv("BENCH_BODY")
local sent = 0
request = function()
  sent = sent + 1
  local key = keys[(sent - 1) % #keys + 1]
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
""" + WRK_DONE


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


# -- processes ---------------------------------------------------------------------------


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime + stime in ticks) for every process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def descendants(roots: list[int], table: dict[int, tuple[int, int]] | None = None) -> set[int]:
    table = table or _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _reaped_children_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _cpu_busy() -> tuple[int, int]:
    """(busy ticks without steal, steal ticks), all cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq, steal


@dataclass
class CpuSample:
    wall: float
    target_s: float  # CPU seconds of the measured processes
    foreign_s: float  # CPU seconds spent by processes outside this harness
    steal_s: float

    def as_dict(self) -> dict:
        return {
            "wall_s": round(self.wall, 3),
            "target_cpu_s": round(self.target_s, 3),
            "foreign_cpu_s": round(self.foreign_s, 3),
            "foreign_load": round(self.foreign_s / self.wall, 3) if self.wall else 0.0,
            "steal_s": round(self.steal_s, 3),
        }


class CpuMeter:
    """CPU time of some processes (and their children) over an interval, and of the rest of the machine."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets

    def __enter__(self) -> "CpuMeter":
        table = _proc_stats()
        self._pids = descendants(self.targets, table)
        self._ours = descendants([os.getpid()], table)
        self._t0 = {pid: table[pid][1] for pid in self._ours | self._pids}
        self._busy0, self._steal0 = _cpu_busy()
        self._reaped0 = _reaped_children_s()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall0
        table = _proc_stats()
        busy, steal = _cpu_busy()
        ours = descendants([os.getpid()], table)

        def ticks(pids: set[int]) -> int:
            # processes that ended meanwhile lose their last ticks: a small undercount
            return sum(table[p][1] - self._t0.get(p, 0) for p in pids if p in table)

        target = ticks(self._pids | (descendants(self.targets, table)))
        # children that ended (wrk) count through os.times() once reaped
        ours_s = ticks(ours | self._ours) / CLK_TCK + (_reaped_children_s() - self._reaped0)
        self.sample = CpuSample(
            wall=wall,
            target_s=target / CLK_TCK,
            foreign_s=max(0.0, (busy - self._busy0) / CLK_TCK - ours_s),
            steal_s=(steal - self._steal0) / CLK_TCK,
        )


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a running process."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, OSError):
            pass


def cpu_list(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


# -- wrk -----------------------------------------------------------------------------------


class Wrk:
    def __init__(self, workdir: Path, cpus: set[int]) -> None:
        self.binary = shutil.which("wrk")
        if self.binary is None:
            raise SystemExit("bench: wrk not found; run `make system-deps` (Debian package wrk)")
        self.cpus = cpus
        self.fixed = workdir / "fixed.lua"
        self.fixed.write_text(WRK_FIXED)
        self.keys = workdir / "keys.lua"
        self.keys.write_text(WRK_KEYS)

    def run(
        self,
        url: str,
        *,
        body: bytes,
        key: str | None = None,
        connections: int = 64,
        duration: float = 10.0,
        targets: list[int] | None = None,
        keys_file: Path | None = None,
        cpus: set[int] | None = None,
        timeout_s: int = 10,
        until: Callable[[], bool] | None = None,
    ) -> dict:
        """One wrk run; returns requests/s, latency percentiles (ms) and CPU per request (us)."""
        env = dict(os.environ, BENCH_BODY=body.decode(), BENCH_KEY=key or "")
        script = self.fixed
        if keys_file is not None:
            env["BENCH_KEYS_FILE"] = str(keys_file)
            script = self.keys
        argv = [
            "taskset", "-c", cpu_list(cpus or self.cpus), self.binary, "-t1", f"-c{connections}",
            f"-d{max(1, round(duration))}s", f"--timeout={timeout_s}s", "-s", str(script), url,
        ]
        with CpuMeter(targets or []) as meter:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if until is not None:  # poll; SIGINT makes wrk stop early and report as usual
                while proc.poll() is None and not until():
                    time.sleep(0.5)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=duration + 120)
        line = next((l for l in stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {stdout}\n{stderr}")
        raw = json.loads(line.removeprefix("BENCH_JSON "))
        seconds = raw["duration_us"] / 1e6
        requests = raw["requests"]
        cpu = meter.sample
        result = {
            "connections": connections,
            "requests": requests,
            "rps": round(requests / seconds, 1),
            "errors": raw["socket_errors"] + raw["status_errors"],
            "p50_ms": raw["p50"] / 1000,
            "p90_ms": raw["p90"] / 1000,
            "p99_ms": raw["p99"] / 1000,
            "p999_ms": raw["p999"] / 1000,
            "max_ms": raw["max"] / 1000,
            "mean_ms": round(raw["mean"] / 1000, 4),
            "cpu_us_per_request": round(cpu.target_s * 1e6 / requests, 1) if requests and targets else None,
            "cpu": cpu.as_dict(),
        }
        return result
