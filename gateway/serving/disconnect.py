"""The client going away mid-request: noticed, and turned into a cancellation of the request.

A proxied request waits on LiteLLM; when its client disconnects, the gateway should stop
waiting (and let LiteLLM's request go) rather than finish work nobody will read.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from gateway.serving.ticker import Ticker, Timed

Receive = Callable[[], Awaitable[dict]]  # the ASGI receive() of the request

# A request still waiting for (or streaming from) LiteLLM after this long starts watching for
# its client to go away (see DisconnectWatcher).
WATCH_AFTER_SECONDS = 0.1


class ClientDisconnected(Exception):
    """The client went away before the gateway answered."""


class DisconnectWatcher(Timed):
    """Cancels the current task when the client goes away, so the upstream request is cancelled too.

    Watching takes a task that waits on receive(); for the many requests LiteLLM answers
    within WATCH_AFTER_SECONDS that task is pure cost (measured: ~60-80 us a request,
    docs/performance.md), so it starts only when the request is still running by then
    (a Ticker timeout, so a tick later at most). A client that leaves is noticed that
    late: what it costs is LiteLLM working on for a moment for nobody, never a wrong answer.
    """

    __slots__ = ("disconnected", "_task", "_receive", "_loop", "_watch")

    def __init__(self, ticker: Ticker, receive: Receive) -> None:
        # The loop is passed in (as the ticker's): asyncio.get_running_loop() costs a getpid()
        # system call per call on Python 3.11, and current_task() does too unless given the loop.
        self.disconnected = False
        self._loop = ticker.loop
        self._task = asyncio.current_task(ticker.loop)
        self._receive = receive
        self._watch: asyncio.Task | None = None
        ticker.set(self, WATCH_AFTER_SECONDS)

    def fire(self) -> None:
        self._watch = self._loop.create_task(self._run(self._receive))

    async def _run(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self._task.cancel()  # type: ignore[union-attr]
                return

    def stop(self) -> None:
        self.disarm()
        # Let go of the task too: a cancelled task keeps its CancelledError, whose traceback
        # holds _run's frame and so this watcher. Kept here, that was a reference cycle per
        # request (about 14 objects, the request's receive() among them) left to the garbage
        # collector; measured as ~half of its collections (docs/performance.md).
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
