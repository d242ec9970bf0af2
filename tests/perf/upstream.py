"""The benchmark's upstream: a fake LiteLLM fast enough never to be the bottleneck.

    python -m tests.perf.upstream PORT

One process, uvloop, an asyncio.Protocol over httptools' parser: no framework, so
one request costs a few microseconds (the harness measures it: the "direct" row).
It answers like LiteLLM with a mock model:

    POST <any inference path>     chat completion JSON (with `usage`), Content-Length
    ... with "stream": true       5 SSE chunks + a usage chunk + [DONE], chunked encoding
    header x-bench-gap-ms: N      (streams) N ms between chunks, for the chunk-timing check
    GET /health/liveliness        200 (the gateway's health probe)
    GET /v1/models                a model list

The gateway and the ceiling proxy forward the client's headers, so x-bench-gap-ms
reaches this server through them unchanged.
"""

from __future__ import annotations

import asyncio
import socket
import sys

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


class _Connection(asyncio.Protocol):
    __slots__ = ("transport", "parser", "url", "body", "gap_ms", "loop")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.gap_ms = 0
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
        self.gap_ms = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"x-bench-gap-ms":
            self.gap_ms = int(value)

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
                if self.gap_ms:
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


async def serve(port: int, host: str = "127.0.0.1") -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Connection, host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    port = int(argv[1])
    uvloop.run(serve(port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
