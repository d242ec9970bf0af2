"""LiteLLM's error answers as clients see them: the I/O around policies/scrub.py.

    send_error_answer()   a non-2xx answer from LiteLLM, read whole (at most MAX_ERROR_BODY
                          bytes): relayed with its message cleaned when the user can act on
                          it (policies.scrub.RELAYED), else the gateway's own LITELLM_ERROR
                          (LITELLM_TIMEOUT for LiteLLM's 408) carrying the request id
    StreamErrors          the same rule for the `data: {"error": ...}` events LiteLLM writes
                          when a stream fails after it began (proxy_server.async_data_generator),
                          and for the Responses API's `event: response.failed`
                          (common_utils/responses_stream_errors.py)

LiteLLM's own text goes to the request's access line (`upstream_error`, with
`upstream_status`), where the operator finds it by request id.
"""

from __future__ import annotations

import zlib
from typing import Any, Awaitable, Callable

import aiohttp
import orjson

from gateway.errors import GatewayError, LiteLLMError, UpstreamTimeoutError
from policies.scrub import event_status, relayed, relayed_failure

Send = Callable[[dict], Awaitable[None]]

MAX_ERROR_BODY = 64 * 1024  # LiteLLM's error bodies are a few hundred bytes
MAX_LOGGED = 16 * 1024  # of LiteLLM's text in the access line
_MARK = b'data: {"error"'  # how LiteLLM's mid-stream error events begin (json.dumps or orjson)
_FAILED = b"event: response.failed\n"  # a Responses API stream's failure event
_DATA = b"\ndata: "
_HEADERS_REPLACED = frozenset({b"content-type", b"content-length", b"content-encoding"})


def replacement(status: int, request_id: str) -> GatewayError:
    """The gateway's error for a LiteLLM answer the user cannot act on."""
    detail = f"request id: {request_id}"
    if status == 408:  # LiteLLM's backend timed out
        return UpstreamTimeoutError(detail=detail)
    return LiteLLMError(status if 500 <= status <= 599 else 502, detail)


def error_answer(status: int, body: bytes, request_id: str, log: dict[str, Any]) -> tuple[int, bytes]:
    """(status, body) the client gets for LiteLLM's error answer; LiteLLM's text goes to `log`."""
    log["upstream_status"] = status
    log["upstream_error"] = body[:MAX_LOGGED].decode("utf-8", "replace")
    payload = relayed(status, body)
    if payload is not None:
        return status, orjson.dumps(payload)
    error = replacement(status, request_id)
    return error.status, error.body()


async def send_error_answer(upstream: Any, response: aiohttp.ClientResponse, send: Send,
                            headers: list[tuple[bytes, bytes]], log: dict[str, Any]) -> int:
    """Answer LiteLLM's non-2xx `response` (its allow-listed `headers` kept, the body ours)."""
    body = await upstream.read_body(response, limit=MAX_ERROR_BODY)
    body = _decoded(body, response.headers.get("content-encoding", ""))
    status, out = error_answer(response.status, body, log["request_id"], log)
    headers = [h for h in headers if h[0] not in _HEADERS_REPLACED]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})
    return status


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body as LiteLLM wrote it: the gateway passes bodies undecoded, but answers errors itself."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)
            return inflater.decompress(body, MAX_ERROR_BODY)
        except zlib.error:
            pass
    return b""  # unreadable here: the client gets the gateway's words, not LiteLLM's bytes


def _may_be_error(tail: bytes) -> bool:
    """Whether an incomplete event is, or may still become, an error event."""
    for mark in (_MARK, _FAILED):
        if tail.startswith(mark) or mark.startswith(tail[: len(mark)]):
            return True
    return False


class StreamErrors:
    """LiteLLM's mid-stream error events, cleaned as a stream passes through.

    feed() takes each chunk as it arrives and returns what to send on. Chunks that end on an
    event boundary and hold no error event (a stream's every chunk, usually) come back as they
    are, for the cost of an endswith() and two substring searches. A chunk that ends inside an
    event that is, or may still become, an error event (`data: {"error"`, `event:
    response.failed`) keeps that event's start back until its end arrives: an SSE client cannot
    read half an event anyway, and no other event is held. end() returns what is still held when
    the stream ends. Events are taken to end with a blank line written as LiteLLM writes it
    (`\n\n`).
    """

    __slots__ = ("held", "boundary", "log")

    def __init__(self, log: dict[str, Any]) -> None:
        self.held = b""
        self.boundary = True  # what went out so far ends between two events
        self.log = log

    def feed(self, chunk: bytes) -> bytes:
        if not self.held and chunk.endswith(b"\n\n"):
            self.boundary = True
            return self._clean(chunk) if _MARK in chunk or _FAILED in chunk else chunk
        return self._split(chunk)

    def end(self) -> bytes:
        held, self.held = self.held, b""
        return self._clean(held) if held else b""

    def _split(self, chunk: bytes) -> bytes:
        continuing = bool(self.held)
        chunk, self.held = self.held + chunk, b""
        last = chunk.rfind(b"\n\n")
        if last != -1:
            start = last + 2
        elif self.boundary or continuing:
            start = 0
        else:  # the middle of an event begun in an earlier chunk, and not an error event
            return chunk
        tail = chunk[start:]
        if tail and (continuing and start == 0 or _may_be_error(tail)):
            self.held, chunk = tail, chunk[:start]
            self.boundary = True
        else:
            self.boundary = chunk.endswith(b"\n\n")
        return self._clean(chunk) if _MARK in chunk or _FAILED in chunk else chunk

    def _clean(self, chunk: bytes) -> bytes:
        events = chunk.split(b"\n\n")
        for i, event in enumerate(events):
            if event.startswith(_MARK):
                events[i] = b"data: " + self._event(event[len(b"data: "):])
            elif event.startswith(_FAILED):
                events[i] = self._failed(event)
        return b"\n\n".join(events)

    def _failed(self, event: bytes) -> bytes:
        """`event: response.failed`: its response.error cleaned, or the gateway's words (code kept)."""
        head, _, data = event.partition(_DATA)
        log = self.log
        log["upstream_error"] = data[:MAX_LOGGED].decode("utf-8", "replace")
        try:
            payload = orjson.loads(data)
            response = payload["response"]
            error = response.get("error")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            payload = error = None
        cleaned = relayed_failure(error)
        if cleaned is None:
            code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), str) else "server_error"
            cleaned = {"code": code, "message": replacement(500, log["request_id"]).message}
        if payload is None:  # cut short: the failure all the same, in the gateway's words
            payload = {"type": "response.failed", "response": {"status": "failed"}}
        payload["response"]["error"] = cleaned
        return head + _DATA + orjson.dumps(payload)

    def _event(self, data: bytes) -> bytes:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None  # cut short: an error all the same, in the gateway's words
        status = event_status(payload)
        log = self.log
        log["upstream_error"] = data[:MAX_LOGGED].decode("utf-8", "replace")
        cleaned = relayed(status, data) if payload is not None else None
        if cleaned is not None:
            return orjson.dumps(cleaned)
        return replacement(status, log["request_id"]).body()
