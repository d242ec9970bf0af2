"""Graceful drain on SIGTERM (a deploy, a rolling restart), around uvicorn's own shutdown.

    SIGTERM          state.draining: /health/ready answers 503 "draining" at once;
                     requests are served as before, new connections still accepted
    + drain_delay    uvicorn's own handler runs: listeners close, idle keep-alive
                     connections close, in-flight requests and streams go on
    + drain_seconds  uvicorn's timeout_graceful_shutdown (drain_seconds - drain_delay,
                     set by `serve`) cancels what still runs; the proxy ends it with an
                     SSE error event (a stream) or 503 SHUTTING_DOWN (no answer started)

The SIGTERM handler is chained in front of uvicorn's (`Server.handle_exit`, which uvicorn
installs with signal.signal for the time it serves; each worker has its own, and the
`--workers` supervisor passes SIGTERM on to them), and only when uvicorn's is the one in
place: an app served some other way (the tests' in-process servers) keeps its signals. A
second SIGTERM goes to uvicorn at once; SIGINT (Ctrl-C) is left to uvicorn. uvicorn puts
its own handlers back when it stops serving.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any, Callable

from gateway.state import GatewayState

log = logging.getLogger("maas_gateway.drain")

_SIGNALS = (signal.SIGTERM,)  # SIGINT (Ctrl-C) keeps uvicorn's prompt stop


def _is_uvicorns(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return getattr(handler, "__name__", "") == "handle_exit" and type(owner).__module__.startswith("uvicorn")


def install(state: GatewayState, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Chain the drain in front of uvicorn's signal handlers; returns what undoes it."""
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    if not all(_is_uvicorns(handler) for handler in previous.values()):
        return lambda: None

    def begin(sig: int, frame: FrameType | None) -> None:
        handler = previous[sig]
        if state.draining:  # a second signal: uvicorn's own handling, now
            handler(sig, frame)  # type: ignore[operator]
            return
        state.draining = True  # readiness is 503 from here on
        loop.call_soon_threadsafe(_scheduled, sig, handler)

    def _scheduled(sig: int, handler: Any) -> None:
        delay = state.config.server.drain_delay_seconds
        log.warning(
            "%s: draining; readiness is 503, new connections accepted for %gs more, in-flight "
            "requests run up to %gs", signal.Signals(sig).name, delay, state.config.server.drain_seconds,
            extra={"fields": {"signal": signal.Signals(sig).name}},
        )
        loop.call_later(delay, handler, sig, None)

    for sig in _SIGNALS:
        signal.signal(sig, begin)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is begin:
                signal.signal(sig, handler)

    return restore
