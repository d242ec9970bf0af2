"""The benchmark's upstream: a fake LiteLLM fast enough never to be the bottleneck.

    python -m tests.perf.upstream PORT [EVENTS GAP_MS]

One process, uvloop, an asyncio.Protocol over httptools' parser: no framework, so
one request costs a few microseconds (the harness measures it: the "direct" row).
It answers like LiteLLM with a mock model:

    POST <any inference path>     chat completion JSON (with `usage`), Content-Length
    ... with "stream": true       5 SSE chunks + a usage chunk + [DONE], chunked encoding
    header x-bench-gap-ms: N      (streams) N ms between chunks, for the chunk-timing check
    ... and x-bench-events: E     an LLM-shaped stream instead (tests/perf/streams.py): E-1 token
                                  events N ms apart (N may be fractional), then a usage event and
                                  [DONE]; every event carries `"t":` 10**15 + the CLOCK_MONOTONIC
                                  microsecond it was due, 16 digits just before its `}\n\n`
    GET /health/liveliness        200 (the gateway's health probe)
    GET /v1/models                a model list

The gateway and the ceiling proxy forward the client's headers, so x-bench-gap-ms
reaches this server through them unchanged. LiteLLM does not: EVENTS and GAP_MS make
every stream that does not say otherwise an LLM-shaped one (tests/perf/streams.py).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sys
import time

import httptools
import orjson
import uvloop

MODEL = "gpt-4o-mini"
STREAM_CHUNKS = 5

_CHAT = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark upstream."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }
)


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk holding one SSE event."""
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _stream_event(**fields: object) -> bytes:
    """One chat.completion.chunk event, as LiteLLM streams them."""
    event = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL, **fields}
    return _chunk(orjson.dumps(event))


_EVENTS = [
    _stream_event(choices=[{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}])
    for i in range(STREAM_CHUNKS)
]
_EVENTS.append(
    _stream_event(
        choices=[],
        usage={"prompt_tokens": 9, "completion_tokens": STREAM_CHUNKS, "total_tokens": 9 + STREAM_CHUNKS},
    )
)
_EVENTS.append(_chunk(b"[DONE]") + b"0\r\n\r\n")

_JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-litellm-call-id: bench\r\ncontent-length: %d\r\n\r\n"
PLAIN_RESPONSE = _JSON_HEAD % len(_CHAT) + _CHAT
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
STREAM_RESPONSE = STREAM_HEAD + b"".join(_EVENTS)
_MODELS = orjson.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]})
MODELS_RESPONSE = _JSON_HEAD % len(_MODELS) + _MODELS
_ALIVE = b"\"I'm alive!\""
ALIVE_RESPONSE = _JSON_HEAD % len(_ALIVE) + _ALIVE
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


# LLM-shaped streams: events whose due time (CLOCK_MONOTONIC, microseconds) is in the event,
# fixed width, so a client finds it at a fixed offset before "}\n\n" without parsing JSON.
# T_OFFSET + the time: 16 digits and no leading zero (which would not be JSON).
T_OFFSET = 10**15
_TIMED = b'{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"' + MODEL.encode() + b'",'
_TOKEN_EVENT = _TIMED + b'"choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}],"t":%016d}'
_USAGE_EVENT = _TIMED + b'"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d},"t":%016d}'


def _timed_chunk(template: bytes, *values: int) -> bytes:
    return _chunk(template % values)


class _Pacer:
    """Every LLM-shaped stream of this server on one timer: a FIFO of (due, stream), due first.

    All streams of a run share one gap, so appending `due + gap` keeps the FIFO in due order:
    one timer per tick for all of them instead of one per event (the upstream must stay cheap).
    """

    def __init__(self) -> None:
        self.queue: collections.deque[list] = collections.deque()
        self.handle: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.Transport, events: int, gap: float, prompt_bytes: int) -> None:
        now = time.monotonic()
        transport.write(STREAM_HEAD + _timed_chunk(_TOKEN_EVENT, T_OFFSET + int(now * 1e6)))
        # [transport, events left, due (s), gap (s), prompt tokens (~4 bytes each), token events]
        self.queue.append([transport, events - 1, now + gap, gap, prompt_bytes // 4, events - 1])
        if self.handle is None:
            self.handle = asyncio.get_running_loop().call_later(gap, self.tick)

    def tick(self) -> None:
        self.handle = None
        queue = self.queue
        now = time.monotonic()
        horizon = now + 0.0005  # libuv timers have 1 ms resolution: what is due within half of it goes now
        while queue and queue[0][2] <= horizon:
            stream = queue.popleft()
            transport, left, due = stream[0], stream[1], stream[2]
            if transport.is_closing():
                continue
            due_us = T_OFFSET + int(due * 1e6)
            if left > 1:
                transport.write(_timed_chunk(_TOKEN_EVENT, due_us))
                stream[1] = left - 1
                stream[2] = due + stream[3]
                queue.append(stream)
            else:
                prompt, completion = stream[4], stream[5]
                transport.write(_timed_chunk(_USAGE_EVENT, prompt, completion, prompt + completion, due_us)
                                + _chunk(b"[DONE]") + b"0\r\n\r\n")
        if queue:
            self.handle = asyncio.get_running_loop().call_later(max(0.0, queue[0][2] - now), self.tick)


_PACER = _Pacer()


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "parser", "url", "body", "gap_ms", "events", "loop", "paced")

    def __init__(self, paced: tuple[int, float] = (0, 0.0)) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.paced = paced  # (events, gap ms) of a stream whose request does not say
        self.events, self.gap_ms = paced
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[union-attr]

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.events, self.gap_ms = self.paced

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"x-bench-gap-ms":
            self.gap_ms = float(value)
        elif lowered == b"x-bench-events":
            self.events = int(value)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        method = self.parser.get_method()
        if method == b"POST":
            body = b"".join(self.body)
            if b'"stream":true' in body or b'"stream": true' in body:
                if self.events and self.gap_ms:
                    _PACER.start(transport, self.events, self.gap_ms / 1000, len(body))
                elif self.gap_ms:
                    self._paced_stream(transport, self.gap_ms / 1000)
                else:
                    transport.write(STREAM_RESPONSE)
            else:
                transport.write(PLAIN_RESPONSE)
        elif self.url.startswith(b"/health"):
            transport.write(ALIVE_RESPONSE)
        elif self.url.startswith((b"/v1/models", b"/models")):
            transport.write(MODELS_RESPONSE)
        else:
            transport.write(NOT_FOUND)
        if not self.parser.should_keep_alive():
            transport.close()

    def _paced_stream(self, transport: asyncio.Transport, gap: float) -> None:
        transport.write(STREAM_HEAD + _EVENTS[0])
        for i, event in enumerate(_EVENTS[1:], start=1):
            self.loop.call_later(gap * i, _write_if_open, transport, event)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None


def _write_if_open(transport: asyncio.Transport, data: bytes) -> None:
    if not transport.is_closing():
        transport.write(data)


async def serve(port: int, host: str = "127.0.0.1", paced: tuple[int, float] = (0, 0.0)) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(paced), host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    port = int(argv[1])
    paced = (int(argv[2]), float(argv[3])) if len(argv) > 3 else (0, 0.0)
    uvloop.run(serve(port, paced=paced))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
