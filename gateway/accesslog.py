"""The access log: one JSON line per proxied request, written to stderr in batches.

    {"ts": "...Z", "level": "info", "logger": "maas_gateway.access", "msg": "request", "pid": 7,
     "request_id": "...", "route": "/v1/chat/completions", "key_prefix": "sk-abcd", ...}

The same line as gateway/logs.py writes for every other record, but not through
`logging`: a LogRecord, the handler lock and one write() per line cost ~60 us of a
proxied request on the benchmark machine (docs/performance.md); a line here is one
orjson call. As Envoy and nginx do with theirs, lines wait in memory and are written
together: every FLUSH_SECONDS, as soon as BUFFER_BYTES wait, and at shutdown. A crash
(not a SIGTERM) can lose the last FLUSH_SECONDS of lines.

Lines pass through logs.redact() like every other line: a key-shaped model name or
user id is cut down to its prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any, Callable

import orjson

from gateway.logs import redact

FLUSH_SECONDS = 0.25
BUFFER_BYTES = 64 * 1024


class AccessLog:
    """Collects access lines; `write` defaults to sys.stderr, looked up when the lines go out."""

    def __init__(self, write: Callable[[str], Any] | None = None, *, flush_seconds: float = FLUSH_SECONDS,
                 buffer_bytes: int = BUFFER_BYTES) -> None:
        self._write = write
        self._flush_seconds = flush_seconds
        self._buffer_bytes = buffer_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        # made in the lifespan, so in the worker that writes
        self._tail = b'","level":"info","logger":"maas_gateway.access","msg":"request","pid":%d' % os.getpid()
        self._second = -1
        self._head = b""

    def record(self, fields: dict[str, Any]) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # the line's constant head, made once a second
            self._second = second
            self._head = b'{"ts":"' + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        # The head and the fields, serialised apart: the first five keys never change but the time.
        rest = orjson.dumps(fields, default=str)
        rest = b"," + rest[1:] if len(rest) > 2 else b"}"
        data = redact(b"%s.%03dZ%s%s" % (self._head, int((now - second) * 1000), self._tail, rest))
        self._lines.append(data)
        self._size += len(data) + 1
        if self._size >= self._buffer_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_seconds, self.flush)

    def flush(self) -> None:
        """Write what waits, now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        text = b"\n".join(self._lines).decode() + "\n"
        self._lines.clear()
        self._size = 0
        write = self._write
        if write is None:
            stream = sys.stderr
            with contextlib.suppress(OSError, ValueError):  # a closed stderr loses log lines, not requests
                stream.write(text)
                stream.flush()
            return
        write(text)
