"""The listeners: uvicorn's httptools protocol with read deadlines, and the sockets `serve` binds.

uvicorn bounds an idle keep-alive connection (timeout_keep_alive) but nothing else: a client
that opens a connection and never finishes its headers, or stops halfway through a body,
holds the connection (and the request's task) forever. `ReadDeadlines` adds, per request:

    headers   within server.header_read_timeout_seconds of the connection (first request)
              or of the request's first byte (later ones); then the connection is closed.
              At most MAX_HEAD_BYTES of them (httptools has no limit): then 431.
    body      within server.body_read_timeout_seconds of the headers; then 408
              REQUEST_TIMEOUT (OpenAI-shaped) if no response has started, and the
              connection is closed (the handler reading it sees a disconnect).
    Both refusals carry the request id (server.request_id_header), as every answer does.

One timer per request, armed when it begins and cancelled when its body is complete.
With server.admin_port set, `serve` binds two sockets for one uvicorn server (and its
workers); the app tells them apart by scope["server"] (gateway/app.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from typing import Any, Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import ServerConfig
from gateway.errors import GatewayError, InvalidRequestError, RequestTimeoutError
from gateway.serving.proxy import _request_id

MAX_HEAD_BYTES = 65_536  # request line and headers; uvicorn's h11 default is 16 KiB


def _new_request_id() -> str:
    """For a refusal of a request that brought no request id: as rare as refusals are."""
    return os.urandom(12).hex()


class ReadDeadlines(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float, body_timeout: float, id_header: str = "x-request-id",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._id_header = id_header.encode()  # server.request_id_header: on the refusals here too
        self._header_timeout = header_timeout
        self._body_timeout = body_timeout
        self._deadline: asyncio.TimerHandle | None = None
        self._headers_at: float | None = None  # loop time the current request's headers completed
        self._head_bytes = 0  # bytes read while the head was incomplete (bounds the parser's buffer)
        self._head_size = 0  # the head as parsed: URL and headers, however many reads brought them
        self._refused = False

    def _arm(self, delay: float) -> None:
        self._deadline = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._headers_at is None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                error = InvalidRequestError(detail=f"request line and headers over {MAX_HEAD_BYTES} bytes")
                self._refuse(431, b"Request Header Fields Too Large", error, self.cycle is None or self.cycle.response_complete)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_at = None
        self._head_bytes = self._head_size = 0
        if self._deadline is None:
            self._arm(self._header_timeout)

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # A head that ends in the read that takes it over the limit passes the check in
        # data_received (which sees only heads still incomplete after a read): checked here,
        # before the request reaches the app.
        if self._head_size > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refused = True
            error = InvalidRequestError(detail=f"request line and headers over {MAX_HEAD_BYTES} bytes")
            self._refuse(431, b"Request Header Fields Too Large", error, self.cycle is None or self.cycle.response_complete)
            return
        self._headers_at = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:  # else no request cycle was made for this body
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._headers_at is None:
            self.transport.close()  # no request to answer yet
            return
        left = self._headers_at + self._body_timeout - self.loop.time()
        if left > 0:
            self._arm(left)  # the header deadline ran out after the headers came: now the body's
            return
        detail = f"the body must arrive within {self._body_timeout:g} s of the headers"
        self._refuse(408, b"Request Timeout", RequestTimeoutError(detail=detail), not self.cycle.response_started)

    def _refuse(self, status: int, reason: bytes, error: GatewayError, answer: bool) -> None:
        """Answer `error` (when `answer`: no other response is under way) and close the connection."""
        if answer:
            body = error.body()
            request_id = _request_id({"headers": self.headers or []}, self._id_header, _new_request_id).encode()
            head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s: %s\r\nconnection: close\r\n\r\n"
            self.transport.write(head % (status, reason, len(body), self._id_header, request_id) + body)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the handler's own answer is dropped ...
            cycle.message_event.set()  # ... and, waiting for the body, it sees a disconnect
        self.transport.close()


def protocol(server: ServerConfig) -> Callable[..., ReadDeadlines]:
    """uvicorn's `http` option (picklable, for workers)."""
    return functools.partial(
        ReadDeadlines, header_timeout=server.header_read_timeout_seconds, body_timeout=server.body_read_timeout_seconds,
        id_header=server.request_id_header,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket as uvicorn's Config.bind_socket makes one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
