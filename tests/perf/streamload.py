"""Thousands of long streams at once, every event timed: the load generator of tests/perf/streams.py.

    python -m tests.perf.streamload PLAN_JSON      (one line of JSON results on stdout at the end)

One process, uvloop, one `asyncio.Protocol` per connection, no HTTP library: each of
`streams` users opens a keep-alive connection, sends a chat completion with
`"stream": true` and an 8-32 KB prompt, reads the answer to its end and sends the next at
once (a closed loop: `streams` streams are open all the time). Users start spread evenly
over `ramp_s`, so new requests keep arriving at an even rate afterwards.

The answers come from tests/perf/upstream.py's LLM-shaped streams, directly or through a
proxy. Each event carries the CLOCK_MONOTONIC microsecond it was due at the upstream (plus
10**15: 16 digits, valid JSON) just before its `}\\n\\n`. The client counts events by finding b"\\n\\n" (no JSON
parsing, no chunked-encoding decoding: chunk framing never holds "\\n\\n") and reads the
digits at their fixed offset; an event's *lateness* is its arrival minus its due time, the
*gap* the time since the same stream's previous event. Only what arrives within the
window [ramp_s + settle_s, + window_s] is recorded (into `array`s of microseconds); the
lines `window-start` and `window-end` on stdout let the harness measure the proxy's CPU and
memory over the same interval. The generator's own CPU time in the window is reported,
so its cost per event can be set beside the proxy's.
"""

from __future__ import annotations

import array
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

CLOCK = time.monotonic
_END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked body (no trailers)
_T = b'"t":'  # the due time's field: _T + 16 digits + "}" + "\n\n"
T_OFFSET = 10**15  # added to the due time by tests/perf/upstream.py: 16 digits, no leading zero
CARRY = 24  # bytes kept from one read for the next: an event's end or the body's end may be split
_WORDS = ("the model reads a long prompt of many tokens and then answers with a stream of short "
          "events each one a token or two of text as large language models do").split()


def prompt_bodies(count: int, min_bytes: int, max_bytes: int, model: str, events: int, seed: int = 19) -> list[bytes]:
    """`count` chat-completion bodies with `"stream": true`, sizes spread evenly over [min, max] bytes."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        target = min_bytes + (max_bytes - min_bytes) * i // max(1, count - 1)

        def body(system: str, user: str) -> bytes:
            return orjson.dumps({
                "model": model, "stream": True, "max_tokens": events,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            })

        words: list[str] = []
        size = len(body("", ""))
        while size < target:
            word = rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        text = " ".join(words)
        bodies.append(body(text[: len(text) // 4], text[len(text) // 4 :]))
    return bodies


def request_bytes(host: str, port: int, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", "content-type: application/json",
             f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Recorder:
    """What the window saw, in microseconds; counters for the whole run."""

    start_us: int = 0
    end_us: int = 1 << 62
    lateness: array.array = field(default_factory=lambda: array.array("q"))
    gaps: array.array = field(default_factory=lambda: array.array("q"))
    ttfb: array.array = field(default_factory=lambda: array.array("q"))
    untimed_events: int = 0  # in the window, without a due time (the [DONE] event)
    streams_done: int = 0  # whole streams completed in the window
    events: int = 0  # all run long
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class StreamUser(asyncio.Protocol):
    """One user: one connection at a time, one stream after the other, each event timed."""

    def __init__(self, requests: list[bytes], first: int, recorder: Recorder, connect: Any) -> None:
        self.requests = requests
        self.next_request = first
        self.rec = recorder
        self.connect = connect  # (user) -> None: open a new connection for this user
        self.transport: asyncio.Transport | None = None
        self.head: bytearray | None = None  # the response's head until it is complete
        self.carry = b""
        self.sent_us = 0
        self.last_us = 0  # the previous event's arrival; 0 before the first of a stream
        self.in_body = False
        self.stopped = False

    # the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        if self.stopped:
            return
        if self.in_body or self.head is not None:
            self.rec.error("connection lost mid-stream" if self.in_body else "connection lost before the answer")
        self.in_body, self.head = False, None
        asyncio.get_running_loop().call_later(0.5, self.connect, self)

    def send(self) -> None:
        request = self.requests[self.next_request % len(self.requests)]
        self.next_request += 1
        self.head, self.carry, self.last_us, self.in_body = bytearray(), b"", 0, False
        self.sent_us = int(CLOCK() * 1e6)
        self.transport.write(request)  # type: ignore[union-attr]

    def stop(self) -> None:
        self.stopped = True
        if self.transport is not None:
            self.transport.abort()

    # the answer

    def data_received(self, data: bytes) -> None:
        now = int(CLOCK() * 1e6)
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head[9:12]
            if status != b"200":
                self.rec.error(f"status {status.decode('latin-1')}")
                self.head = None
                self.transport.close()  # type: ignore[union-attr]  # reconnects in connection_lost
                return
            data = bytes(self.head[end + 4 :])
            self.head, self.in_body = None, True
            if not data:
                return
        self.feed(data, now)

    def feed(self, data: bytes, now: int) -> None:
        """Count and time the events in `data` (body bytes that arrived at `now`); answer the next at the end."""
        rec = self.rec
        carry = self.carry
        buf = carry + data if carry else data
        timed = rec.start_us <= now < rec.end_us
        pos = buf.find(b"\n\n", len(carry) - 1 if carry else 0)
        while pos >= 0:
            rec.events += 1
            if timed:
                if self.last_us:
                    rec.gaps.append(now - self.last_us)
                else:
                    rec.ttfb.append(now - self.sent_us)
                if pos >= 21 and buf.startswith(_T, pos - 21):
                    rec.lateness.append(now - int(buf[pos - 17 : pos - 1]) + T_OFFSET)
                else:
                    rec.untimed_events += 1
            self.last_us = now
            pos = buf.find(b"\n\n", pos + 2)
        if buf.endswith(_END):
            if timed:
                rec.streams_done += 1
            self.in_body = False
            self.send()
        else:
            self.carry = buf[-CARRY:]


def quantiles(values: array.array, qs: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float | None]:
    """Nearest-rank percentiles (as tests.perf.measure.percentile) and the maximum, in ms."""
    if not values:
        return {**{f"p{q:g}": None for q in qs}, "max": None}
    ordered = sorted(values)
    n = len(ordered)
    out: dict[str, float | None] = {}
    for q in qs:
        rank = max(1, min(n, int(round(q / 100 * n + 0.5))))
        out[f"p{q:g}"] = round(ordered[rank - 1] / 1000, 3)
    out["max"] = round(ordered[-1] / 1000, 3)
    return out


async def run(plan: dict) -> dict:
    loop = asyncio.get_running_loop()
    streams, ramp, settle, window = plan["streams"], plan["ramp_s"], plan["settle_s"], plan["window_s"]
    bodies = prompt_bodies(plan.get("prompts", 16), plan["prompt_min_bytes"], plan["prompt_max_bytes"],
                           plan["model"], plan["events"])
    headers = [(k, v) for k, v in plan["headers"]]
    requests = [request_bytes(plan["host"], plan["port"], plan["path"], headers, body) for body in bodies]
    rec = Recorder()
    users: list[StreamUser] = []

    def connect(user: StreamUser) -> None:
        async def opening() -> None:
            try:
                await loop.create_connection(lambda: user, plan["host"], plan["port"])
            except OSError as exc:
                if not user.stopped:
                    rec.error(f"connect: {type(exc).__name__}")
                    loop.call_later(0.5, connect, user)

        if not user.stopped:
            loop.create_task(opening())

    began = CLOCK()
    for i in range(streams):
        user = StreamUser(requests, i, rec, connect)
        users.append(user)
        loop.call_later(ramp * i / streams, connect, user)
    rec.start_us = int((began + ramp + settle) * 1e6)
    rec.end_us = rec.start_us + int(window * 1e6)
    await asyncio.sleep(max(0.0, rec.start_us / 1e6 - CLOCK()))
    cpu0 = time.process_time()
    print("window-start", flush=True)
    await asyncio.sleep(max(0.0, rec.end_us / 1e6 - CLOCK()))
    print("window-end", flush=True)
    cpu = time.process_time() - cpu0
    for user in users:
        user.stop()
    open_at_end = sum(1 for u in users if u.in_body)
    timed = len(rec.lateness) + rec.untimed_events
    return {
        "streams": streams,
        "window_s": window,
        "events_in_window": timed,
        "events_per_s": round(timed / window, 1),
        "expected_events_per_s": round(streams * 1000 / plan["gap_ms"], 1),
        "streams_done_in_window": rec.streams_done,
        "open_at_end": open_at_end,
        "lateness_ms": quantiles(rec.lateness),
        "gap_ms": quantiles(rec.gaps),
        "ttfb_ms": quantiles(rec.ttfb),
        "ttfb_samples": len(rec.ttfb),
        "errors": rec.errors,
        "generator_cpu_s": round(cpu, 3),
        "generator_us_per_event": round(cpu * 1e6 / timed, 2) if timed else None,
    }


def main(argv: list[str]) -> int:
    import uvloop

    plan = json.loads(argv[1])
    result = uvloop.run(run(plan))
    print("result " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
