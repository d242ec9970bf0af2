"""A loopback TCP relay to a real service that a test can cut: fault injection for "the
service became unreachable" without stopping a service other tests share.

    relay = await TcpRelay.start("127.0.0.1", postgres_port)   # relay.port forwards there
    await relay.cut()     # its connections are closed and its port refuses new ones
"""

from __future__ import annotations

import asyncio
import contextlib


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class TcpRelay:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    async def start(cls, host: str, port: int) -> TcpRelay:
        relay = cls(host, port)
        relay._server = await asyncio.start_server(relay._serve, "127.0.0.1", 0)
        relay.port = relay._server.sockets[0].getsockname()[1]
        return relay

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.add(upstream_writer)
        pipes = [asyncio.create_task(_pipe(client_reader, upstream_writer)),
                 asyncio.create_task(_pipe(upstream_reader, client_writer))]
        self._tasks.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)

    async def cut(self) -> None:
        """Stop listening, then close every connection made through the relay."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._writers.clear()
        self._tasks.clear()
