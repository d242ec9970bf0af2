"""The limiter's counters in-process: without Redis (one instance), or while Redis fails.

    LocalCounters   the admission script's semantics (gateway/limits/limiter.py ADMIT_SCRIPT) in a dict:
                    counters that expire, parallel slots, counters whose seed from Postgres failed
    ttl_ms(check)   how long a counter is kept, in Redis and here alike
"""

from __future__ import annotations

from policies.limits import MINUTE, Check, Kind, verdict

LOCAL_MAX_COUNTERS = 100_000  # in-process counters kept; expired ones are swept beyond this
WINDOW_TTL_MS = int(2 * MINUTE * 1000) + 5000  # a minute's counter is read during the next minute


class LocalCounters:
    """The script's semantics in-process (no Redis, or Redis failing): counters that expire, slots."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}  # name -> (value, expires at)
        self._slots: dict[str, set[str]] = {}
        self.unseeded: set[str] = set()  # period counters counting from 0 because their seed failed

    def _get(self, name: str, now: float) -> float:
        entry = self._values.get(name)
        return entry[0] if entry is not None and entry[1] > now else 0.0

    def has(self, name: str, now: float) -> bool:
        entry = self._values.get(name)
        return entry is not None and entry[1] > now

    def seed(self, name: str, value: float, now: float, ttl: float) -> None:
        """A counter's start when it is missing: the usage recorded in its period (a process started anew).
        One that counted from 0 since its seed failed takes the larger of the two (the recorded usage
        holds this process's flushed part of its own count)."""
        if name in self.unseeded:
            self.unseeded.discard(name)
            self._values[name] = (max(self._get(name, now), value), now + ttl)
        elif not self.has(name, now):
            self.add(name, value, now, ttl)

    def add(self, name: str, amount: float, now: float, ttl: float) -> None:
        if len(self._values) >= LOCAL_MAX_COUNTERS:
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        self._values[name] = (self._get(name, now) + amount, now + ttl)

    def admit(self, checks: tuple[Check, ...], names: list[tuple[str, str]], now: float, token: str,
              force: bool) -> tuple[bool, tuple[tuple[float, float], ...]]:
        counts = []
        for check, (current, previous) in zip(checks, names):
            if check.kind is Kind.PARALLEL:
                counts.append((float(len(self._slots.get(current, ()))), 0.0))
            else:
                counts.append((self._get(current, now), self._get(previous, now) if check.previous else 0.0))
        admitted = verdict(checks, tuple(counts), now).admitted
        if admitted or force:
            for check, (current, _) in zip(checks, names):
                if check.kind is Kind.PARALLEL:
                    self._slots.setdefault(current, set()).add(token)
                elif check.kind.cost:
                    self.add(current, check.kind.cost, now, ttl_ms(check, now) / 1000)
        return admitted, tuple(counts)

    def release(self, name: str, token: str) -> None:
        slots = self._slots.get(name)
        if slots is not None:
            slots.discard(token)
            if not slots:
                del self._slots[name]


def ttl_ms(check: Check, now: float) -> int:
    """Milliseconds a counter is kept: a minute's for two minutes, a period's until it ends (+1 day)."""
    if check.previous is not None:
        return WINDOW_TTL_MS
    if check.kind is Kind.PARALLEL:
        return 86_400_000
    return int((check.ends - now + 86_400) * 1000)
