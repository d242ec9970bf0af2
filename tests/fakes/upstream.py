"""A fake OpenAI-compatible upstream for fault injection.

Runs on the test's event loop (aiohttp web server on a free loopback port).
Every request is recorded (method, path, headers, body). Behaviour is switched by
setting `fault` between requests:

    None          fast canned answers (chat JSON, SSE stream with a usage chunk only when
                  `stream_options.include_usage` asks, as LiteLLM, embeddings, models)
    "slow"        waits `delay` seconds before answering
    "status"      answers `status` with LiteLLM's error shape
    "drop"        closes the connection without answering
    "stream_cut"  starts an SSE stream, then drops the connection mid-stream
    "stream_error" starts an SSE stream, then fails as LiteLLM does mid-stream: an error event
                  (`data: {"error": {...}}`, code `status`, message STREAM_ERROR), then [DONE]

and, whatever `fault` is, a model named in `failing_models` answers 500 as LiteLLM relays a
provider's failure (LiteLLM's error shape and its x-litellm-call-id header).

Credentials are checked first, as LiteLLM does: the key (`Authorization: Bearer`, else
`api-key`, else `x-api-key`) must be the master key or one of `virtual_keys` (passthrough
mode: LiteLLM's virtual keys), else 401 with LiteLLM's auth_error body.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support import MASTER_KEY

CHAT_RESPONSE = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "MODEL",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}


# What LiteLLM writes when a provider fails mid-stream (proxy_server.async_data_generator).
STREAM_ERROR = ("litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection reset by "
                "http://10.0.0.7:8000/v1 (key sk-provider-abcdef123456)\n\nLiteLLM: model group 'gpt-4o-mini' failed "
                "with the error above. No fallback was attempted.")


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: Any  # case-insensitive (CIMultiDict)
    body: bytes


@dataclass
class FakeUpstream:
    fault: str | None = None
    delay: float = 0.0
    status: int = 503
    stream_chunks: int = 5
    answer_padding: int = 0  # bytes of filler put before the fields of a chat answer (a body of many reads)
    chunk_gap: float = 0.0
    models: list[str] = field(default_factory=lambda: ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "openai/gpt-4o"])
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _runner: Any = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set to let "slow" answers finish early
    cancelled: int = 0  # requests whose client went away before the answer was complete
    failing_models: set[str] = field(default_factory=set)
    master_key: str = MASTER_KEY
    virtual_keys: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.fault, self.delay, self.status, self.chunk_gap = None, 0.0, 503, 0.0
        self.stream_chunks, self.answer_padding = 5, 0
        self.failing_models.clear()
        self.seen.clear()
        self.cancelled = 0
        self.virtual_keys.clear()
        self.released.clear()

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.startswith("/health/"):  # the gateway's background probe, not traffic
            return web.Response(text="I'm alive!")
        self.seen.append(Seen(request.method, request.path, request.query_string, request.headers.copy(), body))
        try:
            return await self._answer(request, body)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise

    def _authenticated(self, request: web.Request) -> bool:
        authorization = request.headers.get("Authorization", "")
        presented = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
        presented = presented or request.headers.get("api-key") or request.headers.get("x-api-key") or ""
        return presented == self.master_key or presented in self.virtual_keys

    async def _answer(self, request: web.Request, body: bytes) -> web.StreamResponse:
        if not self._authenticated(request):
            error = {"message": "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...",
                     "type": "auth_error", "param": "None", "code": "401"}
            return web.json_response({"error": error}, status=401)
        if self.failing_models and body and orjson.loads(body).get("model") in self.failing_models:
            error = {"error": {"message": "litellm.InternalServerError: provider down", "type": None, "param": None, "code": "500"}}
            return web.json_response(error, status=500, headers={"x-litellm-call-id": "call-failed"})
        if self.fault == "slow":
            try:
                await asyncio.wait_for(self.released.wait(), self.delay)
            except TimeoutError:
                pass
        elif self.fault == "status":
            error = {"error": {"message": f"upstream says {self.status}", "type": "None", "param": "None", "code": str(self.status)}}
            return web.json_response(error, status=self.status)
        elif self.fault == "drop":
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        path = request.path.removeprefix("/v1")
        if request.method == "GET" and path == "/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
            return web.json_response({"object": "list", "data": data})
        if request.method == "GET" and path.startswith("/models/"):
            return web.json_response({"id": path[len("/models/"):], "object": "model", "created": 0, "owned_by": "fake"})
        parsed = orjson.loads(body) if body and request.content_type == "application/json" else {}
        if parsed.get("stream"):
            wants_usage = bool((parsed.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, parsed.get("model", ""), wants_usage)
        if path == "/embeddings":
            answer = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                      "model": parsed.get("model"), "usage": {"prompt_tokens": 3, "total_tokens": 3}}
            return web.json_response(answer)
        answer = dict(CHAT_RESPONSE, model=parsed.get("model", ""))
        if self.answer_padding:
            answer = {"padding": "x" * self.answer_padding, **answer}
        return web.Response(body=orjson.dumps(answer), content_type="application/json",
                            headers={"x-upstream": "fake", "x-litellm-call-id": "call-1"})

    async def _stream(self, request: web.Request, model: str, wants_usage: bool) -> web.StreamResponse:
        """Chunks, then (as LiteLLM does, only when `stream_options.include_usage` asks) a usage chunk."""
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await response.prepare(request)
        for i in range(self.stream_chunks):
            chunk = {"id": "c", "object": "chat.completion.chunk", "model": model,
                     "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if self.fault == "stream_cut" and i == 1:
                assert request.transport is not None
                request.transport.close()
                return response
            if self.fault == "stream_error" and i == 1:
                error = {"message": STREAM_ERROR, "type": "None", "param": "None", "code": str(self.status)}
                await response.write(f"data: {json.dumps({'error': error})}\n\n".encode())
                await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
                return response
            if self.chunk_gap:
                await asyncio.sleep(self.chunk_gap)  # the fault being injected: a slow stream
        if wants_usage:
            usage = {"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [],
                     "usage": {"prompt_tokens": 4, "completion_tokens": self.stream_chunks,
                               "total_tokens": 4 + self.stream_chunks}}
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
