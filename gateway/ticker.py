"""Ticker: one loop timer for the many short-lived timeouts of the hot path.

Every proxied request needs timeouts that almost never fire: the wait for LiteLLM's
response headers, and the moment to start watching for the client going away. Under
uvloop each `loop.call_later()` makes (and cancelling it tears down) a libuv timer:
~12k instructions a request each, measured under valgrind (docs/performance.md). A
Ticker keeps its timeouts in insertion-ordered dicts, one per delay, so each dict is
also in expiry order; one loop timer looks at their fronts every `resolution` seconds
while any timeout waits. Adding or cancelling a timeout is a dict operation.

A timeout fires between `delay` and `delay + resolution` after it was set.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

RESOLUTION_SECONDS = 0.05


def _nothing() -> None:
    pass


class Timeout:
    __slots__ = ("when", "_queue", "_callback", "_args")

    def __init__(self, when: float, queue: dict[Timeout, None], callback: Callable[..., Any], args: tuple) -> None:
        self.when = when
        self._queue = queue
        self._callback = callback
        self._args = args

    def cancel(self) -> None:
        """Forget it; harmless when it already fired or was cancelled."""
        self._queue.pop(self, None)
        self._release()

    def _release(self) -> None:
        # The callback is usually a bound method of the object that holds this timeout: a
        # reference cycle, left to the garbage collector (with all the cycle reaches: a
        # request's task, an aiohttp response) unless it is broken here.
        self._callback = _nothing
        self._args = ()


class Ticker:
    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float | None = None) -> None:
        self.loop = loop
        self._resolution = RESOLUTION_SECONDS if resolution is None else resolution
        self._queues: dict[float, dict[Timeout, None]] = {}  # by delay
        self._timer: asyncio.TimerHandle | None = None

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timeout:
        """Run callback(*args) on the loop once `delay` seconds (and at most a tick more) have passed."""
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = {}
        timeout = Timeout(self.loop.time() + delay, queue, callback, args)
        queue[timeout] = None
        if self._timer is None:
            self._timer = self.loop.call_later(self._resolution, self._tick)
        return timeout

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def _tick(self) -> None:
        self._timer = None
        now = self.loop.time()
        due: list[Timeout] = []
        for delay, queue in list(self._queues.items()):
            expired = []
            for timeout in queue:  # in expiry order: the same delay, added in time order
                if timeout.when > now:
                    break
                expired.append(timeout)
            for timeout in expired:
                del queue[timeout]
            due.extend(expired)
            if not queue:
                del self._queues[delay]
        for timeout in due:
            callback, args = timeout._callback, timeout._args
            timeout._release()
            try:
                callback(*args)
            except Exception as exc:  # as the loop does for a failing callback: reported, the others still run
                self.loop.call_exception_handler({"message": "Ticker callback failed", "exception": exc})
        if self._queues and self._timer is None:
            self._timer = self.loop.call_later(self._resolution, self._tick)

    def close(self) -> None:
        """Drop every timeout and the loop timer."""
        self._queues.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
