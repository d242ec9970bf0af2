"""The pooled client to LiteLLM: one aiohttp session, timeouts, the breaker.

aiohttp was chosen by measurement (README, "Performance"): httpx's pool scan cost
10x the CPU per request. Bodies go through untouched in both directions
(auto_decompress off); hop-by-hop headers are dropped as RFC 9110 section 7.6.1 says.

Timeouts. Inference (`infer`): `litellm.request_timeout_seconds` bounds the wait for
LiteLLM's response headers, which for a non-streamed answer is the whole generation and for
a stream its first chunk; `litellm.stream_idle_timeout_ms` bounds the silence inside a body
the proxy passes on (IdleWatch). A slow generation that runs out of time is 504
LITELLM_TIMEOUT and not a failure of LiteLLM. The gateway's own calls (`request`: the
/v1/models list, the health probe's trial) wait `litellm.timeout_ms`, and reading the small
bodies it reads itself (read_body) too: there a timeout is LiteLLM's failure.
`litellm.connect_timeout_ms` bounds the TCP connect of every call. All but the connect
timeout are Ticker timeouts: aiohttp's own read timeout re-made a loop timer on every read
from the socket.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

import aiohttp
import orjson
from aiohttp import hdrs
from multidict import CIMultiDict

from gateway.serving.breaker import Breaker, UpstreamFailure
from gateway.config import LiteLLMConfig
from gateway.errors import UpstreamError, UpstreamTimeoutError, UpstreamUnavailableError
from gateway.serving.ticker import Ticker, Timed

# Connection-level headers never forwarded, in either direction.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers the gateway sets itself, or that carry the client's credentials.
REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# Every header LiteLLM (1.108) takes a key from (auth/user_api_key_auth.py: SpecialHeaders) or
# forwards to a provider as a credential, and its UI session cookie. A LiteLLM whose
# general_settings.litellm_key_header_name names another one: litellm.key_header_name.
CREDENTIAL_HEADERS = frozenset({
    b"authorization", b"api-key", b"x-api-key", b"x-litellm-api-key", b"x-goog-api-key",
    b"ocp-apim-subscription-key", b"cookie",
})
# The headers LiteLLM takes the end user it bills from before any body field
# (auth_utils.get_end_user_id_from_request_body): in service_key mode only the gateway sets one.
ATTRIBUTION_HEADERS = frozenset({b"x-litellm-customer-id", b"x-litellm-end-user-id"})
END_USER_HEADER = "x-litellm-customer-id"
# The headers that say how the body is read (gateway/serving/reader.py): a Connection header never removes them.
_BODY_HEADERS = frozenset({b"content-type", b"content-encoding"})
# Statuses from LiteLLM that count as its own failure (a provider's 429 or a 4xx never do).
FAILURE_STATUSES = frozenset({502, 503, 504})
# Set by LiteLLM on the answers it makes, errors included: a 5xx with it is a provider's failure relayed.
_LITELLM_CALL_ID = "x-litellm-call-id"


def dropped_headers(*, service_key: bool, key_header_name: str | None = None) -> frozenset[bytes]:
    """The client's request headers never forwarded: hop-by-hop ones, every credential header
    (and LiteLLM's configured key header), and in service_key mode the attribution headers."""
    dropped = REQUEST_DROP | CREDENTIAL_HEADERS
    if key_header_name:
        dropped |= {key_header_name.lower().encode("latin-1")}
    return (dropped | ATTRIBUTION_HEADERS) if service_key else dropped


_NOT_FORWARDED = dropped_headers(service_key=False)


def forward_headers(headers: Iterable[tuple[bytes, bytes]], *, extra: Iterable[tuple[str, str]] = (),
                    dropped: frozenset[bytes] = _NOT_FORWARDED) -> dict[str, str]:
    """The request headers to send to LiteLLM: none of `dropped` (dropped_headers()), plus `extra`.

    One pass; ASGI servers give header names in lowercase."""
    out: dict[str, str] = {}
    named: frozenset[bytes] = frozenset()
    for name, value in headers:
        if name in dropped:
            if name == b"connection":
                named |= _tokens(value)
            continue
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    for token in named - _BODY_HEADERS:
        out.pop(token.decode("latin-1"), None)
    for key, text in extra:
        out[key] = text
    return out


# LiteLLM's response headers that reach clients (README, "What clients see"): what an OpenAI
# client reads, and what keeps a stream unbuffered by proxies in front of the gateway. Every
# other header (x-litellm-*, LiteLLM's x-ratelimit-*, its date and server) stays here; the
# gateway writes the request id and uvicorn the one `date`.
PASSED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"content-encoding",
        b"cache-control",
        b"x-accel-buffering",
        b"retry-after",
        b"x-should-retry",
    }
)


def response_headers(raw: Iterable[tuple[bytes, bytes]], allow: frozenset[bytes] = PASSED_HEADERS) -> list[tuple[bytes, bytes]]:
    """LiteLLM's response headers as the client gets them: those named in `allow`, names in lowercase.

    `allow` never holds a hop-by-hop name (config.py refuses them), but a Connection header
    can make any name hop-by-hop: those are dropped."""
    out = []
    named: frozenset[bytes] = frozenset()
    for name, value in raw:
        name = name.lower()
        if name in allow:
            out.append((name, value))
        elif name == b"connection":
            named |= _tokens(value)
    if named:
        out = [(name, value) for name, value in out if name not in named]
    return out


def allowed_headers(extra: Iterable[str]) -> frozenset[bytes]:
    """PASSED_HEADERS plus the operator's `response_headers.allow`."""
    return PASSED_HEADERS | {name.lower().encode("latin-1") for name in extra}


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _tokens(value: bytes) -> frozenset[bytes]:
    """The header names a Connection header lists, which are hop-by-hop too."""
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


class _ForwardedRequest(aiohttp.ClientRequest):
    """A request to LiteLLM with the headers it is given and no others (but Host).

    aiohttp adds Accept, Accept-Encoding and User-Agent when they are missing: a proxy must
    not (the client did not ask for a compressed answer, and the gateway passes bodies
    through undecoded). Skipping them with `skip_auto_headers` instead copies every header
    per request: ~10k instructions of ~590k (docs/performance.md, "Fourth round"). Nor a
    Content-Type (aiohttp's application/octet-stream) for a body the client sent without
    one: LiteLLM reads the body by its type (gateway/serving/reader.py)."""

    _skip_auto_headers = CIMultiDict({hdrs.CONTENT_TYPE: None})

    def update_auto_headers(self, skip_auto_headers: object) -> None:
        pass


class _Deadline(Timed):
    """asyncio.timeout() for the one await on LiteLLM's response headers, with the same rule:
    when it expires, the task is cancelled, and that cancellation (and no other) becomes a
    timeout. Made here because asyncio.timeout() looks up the running loop and the current
    task per use (on Python 3.11 each lookup is a getpid() system call) and sets a loop timer
    of its own; this one is a Ticker timeout."""

    __slots__ = ("_task", "_expired")

    def __init__(self, ticker: Ticker, seconds: float) -> None:
        self._task = asyncio.current_task(ticker.loop)
        self._expired = False
        ticker.set(self, seconds)

    def fire(self) -> None:
        self._expired = True
        self._task.cancel()  # type: ignore[union-attr]

    def stop(self, *, cancelled: bool) -> bool:
        """Disarm; True when `cancelled` (the await ended in CancelledError) is this deadline's doing."""
        self.disarm()
        if not self._expired:
            return False
        # Expired: its cancel() was requested. Withdraw it; the CancelledError is a timeout only
        # when nobody else (a disconnected client, a shutdown) asked for a cancellation too.
        return self._task.uncancel() == 0 and cancelled  # type: ignore[union-attr]


class IdleWatch(Timed):
    """Ends a response body that LiteLLM has left silent for `seconds` (stream_idle_timeout_ms).

    The proxy sets `last` to `clock()` after each chunk it has passed on: the time the client
    took to take a chunk is not LiteLLM's silence. A Ticker check every quarter of the
    timeout ends the body once nothing came for all of it: the pending read raises
    aiohttp.ServerTimeoutError and the connection is closed. A silence is ended after
    1 to 1.25 times the timeout (and a tick).
    """

    __slots__ = ("last", "clock", "expired", "_seconds", "_response", "_ticker")

    def __init__(self, ticker: Ticker, seconds: float, response: aiohttp.ClientResponse) -> None:
        self._ticker = ticker
        self._seconds = seconds
        self._response = response
        self.clock = ticker.loop.time
        self.last = self.clock()
        self.expired = False
        ticker.set(self, seconds / 4)

    def fire(self) -> None:
        if self.clock() - self.last < self._seconds:
            self._ticker.set(self, self._seconds / 4)
            return
        self.expired = True
        self._response.content.set_exception(aiohttp.ServerTimeoutError(f"LiteLLM sent nothing for {self._seconds:g} s"))
        self._response.close()

    def stop(self) -> None:
        self.disarm()


class Upstream:
    """LiteLLM as seen from the gateway; one per process, created in the lifespan."""

    def __init__(self, config: LiteLLMConfig, breaker: Breaker) -> None:
        self.config = config
        self.breaker = breaker
        self.base_url = config.url.rstrip("/")
        self._timeout = config.timeout_ms / 1000
        self._session: aiohttp.ClientSession | None = None
        self.ticker: Ticker | None = None  # the serving loop's, made by start()

    async def start(self) -> None:
        self.ticker = Ticker(asyncio.get_running_loop())
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            request_class=_ForwardedRequest,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_ms / 1000),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.ticker is not None:
            self.ticker.close()

    def set_timeout(self, timeout_ms: int) -> None:
        self._timeout = timeout_ms / 1000

    async def request(
        self, method: str, path_qs: str, headers: dict[str, str], body: bytes | None
    ) -> aiohttp.ClientResponse:
        """One of the gateway's own calls, through the LiteLLM breaker, within litellm.timeout_ms.

        LiteLLM's 502/503/504 and a timeout count as failures for the breaker; the statuses
        are returned as they are. The caller must release() the response.
        """
        try:
            return await self.breaker.call(self._own, method, path_qs, headers, body)
        except UpstreamFailure as failure:
            if failure.result is not None:
                return failure.result
            raise self._failure_error(failure) from failure

    async def infer(
        self,
        method: str,
        path_qs: str,
        headers: dict[str, str],
        body: bytes | None,
        model: Breaker | None = None,
        caller: str = "",
    ) -> aiohttp.ClientResponse:
        """An inference request through the model's breaker (if any) and LiteLLM's.

        Its response headers are awaited up to litellm.request_timeout_seconds; running out
        is 504 LITELLM_TIMEOUT and no failure of LiteLLM's. LiteLLM's breaker counts only
        LiteLLM being unreachable or its own 502/503/504 (one without LiteLLM's call id: a
        proxy in front of it, or LiteLLM failing before it handled the request); the
        model's breaker counts the model's 5xx answers, per `caller` (the key).
        """
        model_trial = model.admit() if model is not None else False
        try:
            trial = self.breaker.admit()
        except BaseException:
            if model is not None:
                model.released(model_trial)
            raise
        try:
            response = await self._send(method, path_qs, headers, body, self.config.request_timeout_seconds, False)
        except UpstreamFailure as failure:  # says nothing about the model
            if model is not None:
                model.released(model_trial)
            self.breaker.failed(trial, reason=failure.reason)
            raise self._failure_error(failure) from failure
        except BaseException:  # a slow generation, a cancellation: no verdict
            if model is not None:
                model.released(model_trial)
            self.breaker.released(trial)
            raise
        status = response.status
        if status in FAILURE_STATUSES and _LITELLM_CALL_ID not in response.headers:
            if model is not None:
                model.released(model_trial)
            self.breaker.failed(trial, reason=f"LiteLLM answered {status}")
            return response
        self.breaker.succeeded(trial)
        if model is not None:
            if status >= 500:
                model.failed(model_trial, caller, reason=f"LiteLLM answered {status}")
            else:
                model.succeeded(model_trial)
        return response

    def _failure_error(self, failure: UpstreamFailure) -> UpstreamError:
        retry_after = self.breaker.retry_after()  # 1, or the open period when this failure opened it
        if failure.reason == "timeout":
            return UpstreamTimeoutError(retry_after=retry_after)
        return UpstreamUnavailableError(detail=failure.reason, retry_after=retry_after)

    async def _own(self, method: str, path_qs: str, headers: dict[str, str], body: bytes | None) -> aiohttp.ClientResponse:
        response = await self._send(method, path_qs, headers, body, self._timeout, True)
        if response.status in FAILURE_STATUSES:
            raise UpstreamFailure(f"LiteLLM answered {response.status}", response)
        return response

    async def _send(
        self, method: str, path_qs: str, headers: dict[str, str], body: bytes | None, timeout: float, own: bool
    ) -> aiohttp.ClientResponse:
        """`own`: a gateway call, whose timeout is LiteLLM's failure; else a generation, whose timeout is not."""
        assert self._session is not None and self.ticker is not None, "Upstream.start() was not awaited"
        deadline = _Deadline(self.ticker, timeout)
        try:
            response = await self._session.request(
                method, self.base_url + path_qs, headers=headers, data=body, allow_redirects=False
            )
        except BaseException as exc:
            timed_out = deadline.stop(cancelled=isinstance(exc, asyncio.CancelledError))
            if timed_out and not own:
                raise UpstreamTimeoutError(retry_after=1) from None  # a slow generation
            if timed_out or isinstance(exc, TimeoutError):  # ours, or aiohttp's connect timeout
                raise UpstreamFailure("timeout") from exc
            if isinstance(exc, aiohttp.ClientError):
                raise UpstreamFailure("LiteLLM unreachable") from exc
            raise
        deadline.stop(cancelled=False)
        return response

    def idle_watch(self, response: aiohttp.ClientResponse) -> IdleWatch:
        """litellm.stream_idle_timeout_ms for the body of `response`, as it is passed on."""
        assert self.ticker is not None, "Upstream.start() was not awaited"
        return IdleWatch(self.ticker, self.config.stream_idle_timeout_ms / 1000, response)

    async def read_body(self, response: aiohttp.ClientResponse, limit: int | None = None) -> bytes:
        """All of a small body the gateway reads itself (its first `limit` bytes, when given),
        within litellm.timeout_ms (else 504)."""
        assert self.ticker is not None, "Upstream.start() was not awaited"
        deadline = _Deadline(self.ticker, self._timeout)
        try:
            body = await response.read() if limit is None else await _read_at_most(response.content, limit)
        except BaseException as exc:
            if deadline.stop(cancelled=isinstance(exc, asyncio.CancelledError)):
                raise UpstreamTimeoutError(detail="reading LiteLLM's answer") from None
            raise
        deadline.stop(cancelled=False)
        return body

    async def get_json(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, object]:
        """A small GET (model list, health): (status, body, decoded body or None)."""
        response = await self.request("GET", path, headers, None)
        try:
            body = await self.read_body(response)
        finally:
            response.release()
        try:
            return response.status, body, orjson.loads(body)
        except orjson.JSONDecodeError:
            return response.status, body, None
