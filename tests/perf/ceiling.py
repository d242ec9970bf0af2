"""The ceiling: the least a Python reverse proxy can do, on the gateway's own stack.

    CEILING_UPSTREAM=http://127.0.0.1:PORT uvicorn tests.perf.ceiling:app \
        --loop uvloop --http httptools --no-access-log --no-proxy-headers --no-server-header

Raw ASGI (as gateway/serving/proxy.py) and one pooled aiohttp session (as gateway/serving/upstream.py):
read the body, send it upstream with the client's headers minus hop-by-hop ones, stream
the answer back chunk by chunk. No authentication, no policy, no metrics, no logs.
CEILING_MAX_CONNECTIONS (default 512, the gateway's litellm.max_connections) sizes the pool.
Whatever the gateway costs above this is the price of its features.
"""

from __future__ import annotations

import os

import aiohttp

_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length"}
)


class Ceiling:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k not in _HOP}
        assert self.session is not None
        async with self.session.request(scope["method"], self.upstream + scope["path"], headers=headers, data=b"".join(chunks)) as r:
            out = [(k.lower(), v) for k, v in r.raw_headers if k.lower() not in _HOP or k.lower() == b"content-length"]
            await send({"type": "http.response.start", "status": r.status, "headers": out})
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=int(os.environ.get("CEILING_MAX_CONNECTIONS", "512"))), auto_decompress=False, skip_auto_headers=("User-Agent",)
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = Ceiling(os.environ.get("CEILING_UPSTREAM", "http://127.0.0.1:4000"))
