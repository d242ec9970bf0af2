"""The access log: one JSON line per proxied request, written to stderr in batches.

    {"ts": "...Z", "level": "info", "logger": "maas_gateway.access", "msg": "request", "pid": 7,
     "request_id": "...", "route": "/v1/chat/completions", "key_prefix": "sk-abcd", ...}

The same line as gateway/ops/logs.py writes for every other record, but not through
`logging`: a LogRecord, the handler lock and one write() per line cost ~60 us of a
proxied request on the benchmark machine (docs/performance.md). A request here only
hands over its fields with the time; as Envoy and nginx do with theirs, lines wait in
memory and are made and written together: every FLUSH_SECONDS, as soon as BUFFER_LINES
wait, and at shutdown: the line's serialisation and redaction are out of the request
(docs/performance.md, "Third round"). A crash (not a SIGTERM) can lose the last
FLUSH_SECONDS of lines.

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

from gateway.ops.logs import redact

FLUSH_SECONDS = 0.25
# A batch is made in one go, holding up the event loop: measured 1.3-2 ms for 512 lines
# (every ~200 ms under load: requests arriving meanwhile wait, the p99 of one connection),
# ~0.2 ms for 64. A write() per 64 lines is still nothing.
BUFFER_LINES = 64


class AccessLog:
    """Collects access lines; `write` defaults to sys.stderr, looked up when the lines go out."""

    def __init__(self, write: Callable[[str], Any] | None = None, *, flush_seconds: float = FLUSH_SECONDS,
                 buffer_lines: int = BUFFER_LINES) -> None:
        self._write = write
        self._flush_seconds = flush_seconds
        self._buffer_lines = buffer_lines
        self._pending: list[tuple[float, dict[str, Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        # made in the lifespan, so in the worker that writes
        self._tail = b'","level":"info","logger":"maas_gateway.access","msg":"request","pid":%d,' % os.getpid()

    def record(self, fields: dict[str, Any]) -> None:
        """One request's line: `fields` is kept as it is until the line is made (not to be changed)."""
        pending = self._pending
        pending.append((time.time(), fields))
        if len(pending) >= self._buffer_lines:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_seconds, self.flush)

    def flush(self) -> None:
        """Make and write what waits, now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        text = redact(b"\n".join(self._lines(pending))).decode() + "\n"
        write = self._write
        if write is None:
            stream = sys.stderr
            with contextlib.suppress(OSError, ValueError):  # a closed stderr loses log lines, not requests
                stream.write(text)
                stream.flush()
            return
        write(text)

    def _lines(self, pending: list[tuple[float, dict[str, Any]]]) -> list[bytes]:
        tail, millis, dumps = self._tail, _MILLIS, orjson.dumps
        lines = []
        second, head = -1, b""
        for now, fields in pending:
            whole = int(now)
            if whole != second:  # the line's constant head, made once a second
                second = whole
                head = b'{"ts":"' + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            # The head and the fields, serialised apart: the first five keys never change but the time.
            try:
                rest = dumps(fields)
            except TypeError:  # a value orjson does not know (none is expected): its str()
                rest = dumps(fields, default=str)
            stamp = millis[int((now - whole) * 1000)]
            if len(rest) > 2:
                lines.append(b"".join((head, stamp, tail, rest[1:])))
            else:  # no fields: the head alone, without the comma that leads them
                lines.append(b"".join((head, stamp, tail[:-1], b"}")))
        return lines


# ".000Z" to ".999Z": the line's milliseconds (a %-format per line cost more than its JSON)
_MILLIS = tuple(b".%03dZ" % n for n in range(1000))
