"""The hot path, as raw ASGI: it orchestrates and decides nothing itself.

    credentials / authenticate   who calls (gateway/serving/credentials.py)
    reader.read_request          read once: body, content type, model names -> facts (gateway/serving/reader.py)
    policies.access.decide       decide once: Allow | Deny (pure; time, mode and record are arguments)
    limiter                      limits and quotas (gateway/limits/limiter.py)
    edits.forwarded_body         forward once: the bytes read, with the two documented edits
                                 (gateway/serving/edits.py); headers with exactly one credential
    _forward                     LiteLLM's answer streamed back chunk by chunk (gateway/serving/relay.py
                                 for its errors)

Raw ASGI callables rather than Starlette Request/Response: measured ~25% more
requests/s and half the streaming cost (README, "Performance"). Nothing here waits
on Redis or Postgres for a warm key. In service_key mode the x-litellm-customer-id header,
which LiteLLM bills by before any body field, is the key's user too (_upstream_headers).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any, Awaitable, Callable

import aiohttp
import orjson

from gateway.serving import reader
from gateway.serving import relay
from gateway.serving.credentials import authenticate, credentials
from gateway.serving.disconnect import ClientDisconnected, DisconnectWatcher
from gateway.serving.edits import forwarded_body
from gateway.errors import (
    MESSAGES,
    GatewayError,
    MethodNotAllowedError,
    RouteNotFoundError,
    ShuttingDownError,
    from_denial,
)
from gateway.serving.failures import answer_unexpected
from gateway.limits.limiter import Meter
from gateway.ops.metrics import (
    AUTH_DECISIONS,
    MODEL_ACCESS_DENIALS,
    OTHER,
    REQUEST_DURATION,
    REQUESTS,
    STREAM_TTFB,
    TALLY,
    UPSTREAM_DURATION,
)
from gateway.serving.routes import Route
from gateway.state import GatewayState
from gateway.store.keys import key_prefix
from gateway.serving.streamusage import UsageStripper
from gateway.serving.upstream import END_USER_HEADER, PASSED_HEADERS, forward_headers, response_headers
from gateway.limits.usage import TAIL_BYTES, TAIL_LIMIT, record_usage
from policies.access import decide, usable_models
from policies.records import Allow, Code, Deny, KeyRecord, Mode, RequestFacts

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_ALLOW_OK = TALLY.cell(AUTH_DECISIONS, ("allow", "ok"))  # held: the one counter every allowed request adds to
_SSE = b"text/event-stream"
# GET /v1/models and /v1/models/{id} (also without /v1): their route label values.
_MODELS_LIST = ("/v1/models",)
_MODELS_ONE = ("/v1/models/{model}",)
def _request_id(scope: Scope, header: bytes, make: Callable[[], str]) -> str:
    for name, value in scope["headers"]:
        if name == header and 0 < len(value) <= 128 and value.isascii() and value.decode().isprintable():
            return value.decode()
    return make()


def request_ids() -> Callable[[], str]:
    """Request ids for requests that bring none: 24 hex digits, a random per-process prefix and
    a 32-bit counter (unique per process for 2^32 requests, without a getrandom() call each)."""
    prefix = os.urandom(8).hex()
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter) & 0xFFFFFFFF:08x}"


def _ms(seconds: float) -> float:
    """Milliseconds, truncated to the microsecond (round(x, 3) converts through decimal digits: ~5x slower)."""
    return int(seconds * 1_000_000) / 1000


async def send_error(send: Send, error: GatewayError, request_id: str, id_header: bytes) -> None:
    body = error.body()
    headers = error.headers()
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((id_header, request_id.encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Proxy:
    """The inference routes and /v1/models; `holder.state` is set by the lifespan."""

    def __init__(self, holder: Any, request_id_header: str = "x-request-id",
                 passed_headers: frozenset[bytes] = PASSED_HEADERS) -> None:
        self.holder = holder
        self.passed_headers = passed_headers  # LiteLLM's response headers clients get (not reloadable)
        self.new_request_id = request_ids()
        self.id_name = request_id_header  # server.request_id_header (not reloadable)
        self.id_header = request_id_header.encode()

    def _model_label(self, state: GatewayState, model: str | None) -> str:
        if model is None:
            return ""
        return model if model in state.known_models else OTHER

    async def handle(self, scope: Scope, receive: Receive, send: Send, route: Route, path_model: str | None) -> None:
        state: GatewayState = self.holder.state
        started = time.perf_counter()
        id_header = self.id_header
        request_id = _request_id(scope, id_header, self.new_request_id)
        log: dict[str, Any] = {"request_id": request_id, "route": route.name}
        status, code, model, label = 500, "", None, ""
        meter: Meter | None = None
        try:
            if scope["method"] not in route.methods:
                raise MethodNotAllowedError(route.methods)
            key, digest, found = credentials(state, scope)
            record = found if found else await authenticate(state, scope, key, digest, found)
            log["key_prefix"] = key_prefix(key)
            log["user_id"] = record.user_id
            server = state.config.server
            inbound = await reader.read_request(route, scope, receive, path_model, server.max_body_bytes,
                                                server.max_json_elements)
            model = inbound.model
            label = self._model_label(state, model)
            self._decide(state, record, inbound.facts, log)
            if state.mode is not Mode.OFF and (checks := state.limiter.checks(record, model, now := time.time())):
                meter = await state.limiter.admit(record, model, checks, now, state.mode)  # gateway/limits/limiter.py
            elif state.usage is not None:  # no limit applies: usage is still recorded (gateway/limits/usage_recorder.py)
                meter = state.limiter.unlimited(record, model)
            attribute_to = record.user_id if state.service_auth is not None else None
            upstream_body, asked = forwarded_body(inbound, route.name, attribute_to, meter is not None)
            if asked:
                meter.inject_usage = True  # type: ignore[union-attr]  # gateway/serving/streamusage.py
            headers = self._upstream_headers(state, scope, key, request_id, record.user_id)
            inbound = None  # type: ignore[assignment]  # a stream may last minutes: keep only what is sent
            status = await self._forward(state, scope, send, route, headers, upstream_body, label, log, receive, id_header,
                                         record.key_id, meter)
        except GatewayError as error:
            status, code = error.status, error.code
            await send_error(send, error, request_id, id_header)
        except ClientDisconnected:
            status, code = 499, "CLIENT_CLOSED_REQUEST"
        except Exception as exc:
            status, code = 500, "INTERNAL_ERROR"
            await answer_unexpected(send, exc, request_id, id_header, route.name)
        finally:
            if meter is not None:
                state.limiter.finish(meter)  # tokens charged, parallel slot released
                if state.usage is not None:
                    state.usage.record(meter)
            _account(state, route.labels, label, model, status, code, started, log)

    def _decide(self, state: GatewayState, record: KeyRecord, facts: RequestFacts, log: dict) -> None:
        decision = decide(record, facts, time.time(), state.mode)
        if decision.__class__ is Allow and decision.shadowed is None:  # type: ignore[union-attr]
            _ALLOW_OK[0] += 1
            log["decision"] = "allow"
            return
        denial: Deny = decision if isinstance(decision, Deny) else decision.shadowed  # type: ignore[assignment]
        if denial.code in (Code.MODEL_ACCESS_DENIED, Code.SUBSCRIPTION_INACTIVE):
            MODEL_ACCESS_DENIALS.labels(self._model_label(state, denial.model)).inc()
            state.offenders.refused_key(record.key_id)  # gateway/ops/offenders.py
        if isinstance(decision, Deny):
            AUTH_DECISIONS.labels("deny", denial.code.value).inc()
            log["decision"] = "deny"
            raise from_denial(denial)
        AUTH_DECISIONS.labels("shadow_deny", denial.code.value).inc()
        log["decision"] = "shadow_deny"
        log["shadow_code"] = denial.code.value

    def _upstream_headers(self, state: GatewayState, scope: Scope, key: str, request_id: str,
                          user_id: str) -> dict[str, str]:
        """Headers for LiteLLM: the client's, minus every credential, plus exactly one key.

        service_key mode: the service key, and the key's user as the end user LiteLLM bills
        (the client's attribution headers are dropped). passthrough: the key the gateway
        authenticated, as a Bearer token, so LiteLLM cannot pick another credential the
        client also sent.
        """
        extra = [(self.id_name, request_id)]
        client = scope.get("client")
        if client:
            extra.append(("x-forwarded-for", client[0]))
        if state.service_auth is None:
            extra.append(("authorization", f"Bearer {key}"))
        else:
            extra.append(("authorization", state.service_auth))
            if user_id.isascii() and user_id.isprintable():  # else the body's `user` alone says it
                extra.append((END_USER_HEADER, user_id))
        return forward_headers(scope["headers"], extra=extra, dropped=state.dropped_headers)

    async def _forward(
        self,
        state: GatewayState,
        scope: Scope,
        send: Send,
        route: Route,
        headers: dict[str, str],
        body: bytes,
        model_label: str,
        log: dict,
        receive: Receive,
        id_header: bytes,
        caller: str = "",
        meter: Meter | None = None,
    ) -> int:
        path_qs = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string")
        target = path_qs.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        request_id = log["request_id"]
        watcher = DisconnectWatcher(state.upstream.ticker, receive)  # type: ignore[arg-type]
        streaming = started = False
        tail = bytearray()  # the response's end, where `usage` is (gateway/limits/usage.py)
        stripper: UsageStripper | None = None
        try:
            sent_at = time.perf_counter()
            # model_label is the model when the gateway knows it: then it has a breaker of its own
            model_breaker = state.model_breakers.get(model_label, state.known_models)
            response = await state.upstream.infer(scope["method"], target, headers, body, model_breaker, caller)
            try:
                upstream_elapsed = time.perf_counter() - sent_at
                TALLY.observe(UPSTREAM_DURATION, route.labels, upstream_elapsed)
                log["upstream_ms"] = _ms(upstream_elapsed)
                out_headers = response_headers(response.raw_headers, self.passed_headers)
                out_headers.append((id_header, request_id.encode()))
                if meter is not None:
                    out_headers += meter.headers  # x-ratelimit-*
                if response.status >= 300:  # LiteLLM's error: cleaned, or the gateway's own (gateway/serving/relay.py)
                    watcher.stop()
                    return await relay.send_error_answer(state.upstream, response, send, out_headers, log)
                await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
                started = True
                if meter is not None:
                    meter.served = True
                content_type = response.headers.get("content-type", "").encode()
                streaming = content_type.startswith(_SSE)
                stream_errors = relay.StreamErrors(log) if streaming else None  # LiteLLM's error events, cleaned
                if streaming and meter is not None:  # counts events; strips the usage chunk the gateway asked for
                    stripper = UsageStripper(strip=meter.inject_usage)
                first = streaming  # a stream's first chunk is timed (STREAM_TTFB)
                last = b""  # the chunk that completes the body goes out with the end of the response
                content = response.content
                # No idle timeout for a body that is all here already (a small answer usually is).
                idle = None if content.is_eof() else state.upstream.idle_watch(response)
                try:
                    async for chunk in content.iter_any():
                        if stream_errors is not None:
                            chunk = stream_errors.feed(chunk)
                        tail += chunk
                        if len(tail) > TAIL_LIMIT:
                            del tail[:-TAIL_BYTES]
                        if stripper is not None:  # gateway/serving/streamusage.py
                            chunk = stripper.feed(chunk)
                        if first:
                            TALLY.observe(STREAM_TTFB, route.labels, time.perf_counter() - sent_at)
                            first = False
                        if content.at_eof():  # aiohttp has the whole body: one send and one read fewer
                            last = chunk
                            break
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        if idle is not None:
                            idle.last = idle.clock()
                    if stripper is not None:
                        last += stripper.end()
                    if stream_errors is not None:
                        last += stream_errors.end()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log["stream_error"] = "idle timeout" if idle is not None and idle.expired else type(exc).__name__
                    if streaming:
                        await send({"type": "http.response.body", "body": _stream_error_event(), "more_body": True})
                finally:
                    if idle is not None:
                        idle.stop()
                watcher.stop()  # before completing: a complete response reads as a disconnect
                await send({"type": "http.response.body", "body": last, "more_body": False})
                if response.status == 200:
                    record_usage(tail, model_label)

            finally:
                response.release()
            return response.status
        except asyncio.CancelledError:
            if watcher.disconnected:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                raise ClientDisconnected() from None
            if state.draining and (not started or streaming):  # the drain's time is over (gateway/runtime/drain.py)
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                if not started:
                    raise ShuttingDownError(retry_after=1) from None
                log["stream_error"] = "shutting down"
                await send({"type": "http.response.body", "body": _stream_error_event(_SHUTDOWN), "more_body": False})
                return 200
            raise
        finally:
            watcher.stop()
            if meter is not None and started:  # a 2xx answer, whole or cut: its tokens (gateway/limits/limiter.py)
                meter.measure(tail, len(body), stripper.events if stripper is not None else 0)

    async def models(self, scope: Scope, receive: Receive, send: Send, model_id: str | None) -> None:
        """GET /v1/models (filtered) and GET /v1/models/{id} (404 unless usable)."""
        state: GatewayState = self.holder.state
        started = time.perf_counter()
        id_header = self.id_header
        request_id = _request_id(scope, id_header, self.new_request_id)
        labels = _MODELS_LIST if model_id is None else _MODELS_ONE
        log: dict[str, Any] = {"request_id": request_id, "route": labels[0]}
        label = "" if model_id is None else self._model_label(state, model_id)
        status, code = 500, ""
        try:
            if scope["method"] != "GET":
                raise MethodNotAllowedError(("GET",))
            key, digest, found = credentials(state, scope)
            record = found if found else await authenticate(state, scope, key, digest, found)
            log["key_prefix"] = key_prefix(key)
            log["user_id"] = record.user_id
            headers = self._upstream_headers(state, scope, key, request_id, record.user_id)
            status, raw, data = await state.upstream.get_json("/v1/models", headers)
            if status != 200:
                status, raw = relay.error_answer(status, raw, request_id, log)  # cleaned, or the gateway's own
                await _send_json(send, status, raw, request_id, id_header)
                return
            if not isinstance(data, dict) or not isinstance(data.get("data"), list):
                await _send_json(send, status, raw, request_id, id_header)  # LiteLLM's own answer
                return
            entries = [e for e in data["data"] if isinstance(e, dict) and isinstance(e.get("id"), str)]
            allowed = set(usable_models(record, [e["id"] for e in entries], time.time(), state.mode))
            if model_id is None:
                payload = {"object": "list", "data": [e for e in entries if e["id"] in allowed]}
            else:
                match = next((e for e in entries if e["id"] == model_id and model_id in allowed), None)
                if match is None:
                    raise RouteNotFoundError("MODEL_NOT_FOUND", f"model: {model_id}", param="model")
                payload = match
            await _send_json(send, 200, orjson.dumps(payload), request_id, id_header)
        except GatewayError as error:
            status, code = error.status, error.code
            await send_error(send, error, request_id, id_header)
        except Exception as exc:
            status, code = 500, "INTERNAL_ERROR"
            await answer_unexpected(send, exc, request_id, id_header, labels[0])
        finally:
            _account(state, labels, label, model_id, status, code, started, log)


def _account(state: GatewayState, labels: tuple[str], model_label: str, model: str | None, status: int, code: str,
             started: float, log: dict[str, Any]) -> None:
    """A request's metrics and access line, once it is answered: `labels` is (route,)."""
    elapsed = time.perf_counter() - started
    TALLY.inc(REQUESTS, (labels[0], model_label, str(status), code))
    TALLY.observe(REQUEST_DURATION, labels, elapsed)
    if state.config.logging.access_log:
        log["model"] = model
        log["status"] = status
        log["code"] = code or None
        log["duration_ms"] = _ms(elapsed)
        state.access_log.record(log)


async def _send_json(send: Send, status: int, body: bytes, request_id: str, id_header: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (id_header, request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_INTERRUPTED = ("The model service stopped answering mid-stream. Please try again.", "LITELLM_STREAM_INTERRUPTED")
_SHUTDOWN = (MESSAGES["SHUTTING_DOWN"], "SHUTTING_DOWN")


def _stream_error_event(what: tuple[str, str] = _INTERRUPTED) -> bytes:
    message, code = what
    error = {"error": {"message": message, "type": "service_unavailable_error", "param": None, "code": code}}
    return b"data: " + orjson.dumps(error) + b"\n\n"
