"""A minimal blocking HTTP/1.1 client for timing single requests (1 connection, keep-alive).

Raw sockets, so the client adds microseconds rather than an HTTP library's hundreds, and
the time each piece of a response arrives is known: the first body byte (TTFB) and each
complete SSE event ("\\n\\n"), in seconds after the request was sent.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    ttfb: float  # first body byte, seconds after the request was sent
    total: float  # whole response
    events: list[float] = field(default_factory=list)  # each complete SSE event
    reads: int = 0  # recv() calls that brought body bytes


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buf = sock, b""
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _recv(self) -> bytes:
        assert self._sock is not None
        data = self._sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Response:
        sock = self._sock or self._connect()
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            return self._exchange(sock, payload)
        except (ConnectionError, OSError):
            self.close()  # a stale keep-alive connection: one retry on a fresh one
            return self._exchange(self._connect(), payload)

    def _exchange(self, sock: socket.socket, payload: bytes) -> Response:
        sent = time.perf_counter()
        sock.sendall(payload)
        buf = self._buf
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        now = time.perf_counter()
        head, _, buf = buf.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        response = Response(status, headers, b"", ttfb=0.0, total=0.0)
        if "content-length" in headers:
            body = self._read_length(buf, int(headers["content-length"]), now, sent, response)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked(buf, now, sent, response)
        else:
            raise ConnectionError("response without length (connection-delimited bodies are not supported)")
        response.body = body
        response.total = time.perf_counter() - sent
        if headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _read_length(self, buf: bytes, length: int, now: float, sent: float, response: Response) -> bytes:
        if buf:
            response.ttfb, response.reads = now - sent, 1
        while len(buf) < length:
            buf += self._recv()
            if not response.reads:
                response.ttfb = time.perf_counter() - sent
            response.reads += 1
        self._buf = buf[length:]
        return buf[:length]

    def _read_chunked(self, raw: bytes, now: float, sent: float, response: Response) -> bytes:
        body = bytearray()
        events = 0
        pos = 0
        while True:
            # decode every complete chunk in raw[pos:]
            done = False
            while True:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(raw[pos:eol].split(b";")[0], 16)
                if size == 0:  # the last chunk; trailers are not supported
                    if raw[eol : eol + 4] != b"\r\n\r\n":
                        break
                    self._buf = raw[eol + 4 :]
                    done = True
                    break
                if len(raw) < eol + 2 + size + 2:
                    break
                body += raw[eol + 2 : eol + 2 + size]
                pos = eol + 2 + size + 2
            if body and not response.ttfb:
                response.ttfb = now - sent
            complete = body.count(b"\n\n")
            response.events.extend([now - sent] * (complete - events))
            events = complete
            if done:
                return bytes(body)
            raw += self._recv()
            now = time.perf_counter()
            response.reads += 1
