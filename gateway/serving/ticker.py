"""Ticker: one loop timer for the many short-lived timeouts of the hot path.

Every proxied request needs timeouts that almost never fire: the wait for LiteLLM's
response headers, and the moment to start watching for the client going away. Under
uvloop each `loop.call_later()` makes (and cancelling it tears down) a libuv timer:
~12k instructions a request each, measured under valgrind (docs/performance.md). A
Ticker keeps its timeouts in insertion-ordered dicts, one per delay, so each dict is
also in expiry order; one loop timer looks at their fronts every `resolution` seconds
while any timeout waits. Setting or disarming a timeout is a dict operation.

A timeout is the object that wants it (a Timed: a deadline, a watch), not a handle
holding a callback: no object and no bound method are made per timeout, and nothing
refers to the object once its timeout fired or was disarmed, so no reference cycle is
left for the garbage collector (docs/performance.md, "Fourth round").

A timeout fires between `delay` and `delay + resolution` after it was set.
"""

from __future__ import annotations

import asyncio

RESOLUTION_SECONDS = 0.05


class Timed:
    """What a Ticker times: fire() runs once its delay has passed, unless disarm() came first.

    One timeout per object at a time, set by Ticker.set() before any disarm(); set it
    again once it fired (from fire() too) to repeat it."""

    __slots__ = ("_when", "_queue")
    _when: float
    _queue: dict[Timed, None] | None

    def fire(self) -> None:
        raise NotImplementedError

    def disarm(self) -> None:
        """Forget the timeout; harmless when it already fired or was disarmed."""
        queue = self._queue
        if queue is not None:
            del queue[self]
            self._queue = None


class Ticker:
    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float | None = None) -> None:
        self.loop = loop
        self._resolution = RESOLUTION_SECONDS if resolution is None else resolution
        self._queues: dict[float, dict[Timed, None]] = {}  # by delay
        self._timer: asyncio.TimerHandle | None = None

    def set(self, timed: Timed, delay: float) -> None:
        """Run timed.fire() on the loop once `delay` seconds (and at most a tick more) have passed."""
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = {}
        timed._when = self.loop.time() + delay
        timed._queue = queue
        queue[timed] = None
        if self._timer is None:
            self._timer = self.loop.call_later(self._resolution, self._tick)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _tick(self) -> None:
        self._timer = None
        now = self.loop.time()
        due: list[Timed] = []
        for delay, queue in list(self._queues.items()):
            expired = []
            for timed in queue:  # in expiry order: the same delay, set in time order
                if timed._when > now:
                    break
                expired.append(timed)
            for timed in expired:
                del queue[timed]
                timed._queue = None
            due.extend(expired)
            if not queue:
                del self._queues[delay]
        for timed in due:
            try:
                timed.fire()
            except Exception as exc:  # as the loop does for a failing callback: reported, the others still run
                self.loop.call_exception_handler({"message": "Ticker callback failed", "exception": exc})
        if self._queues and self._timer is None:
            self._timer = self.loop.call_later(self._resolution, self._tick)

    def close(self) -> None:
        """Drop every timeout and the loop timer."""
        for queue in self._queues.values():
            for timed in queue:
                timed._queue = None
        self._queues.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
