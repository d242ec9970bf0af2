"""Every error code a client of the proxy routes can meet, end to end: the official openai SDK
(raw aiohttp where the SDK cannot send the request) -> the gateway -> the real LiteLLM
(tests/e2e/litellm-test.yaml). Each refusal is checked whole: status, the OpenAI-shaped body
(message, type, param, code), the SDK exception class, and the headers that go with it
(Retry-After where the contract gives one; `Allow` on a 405; never `x-should-retry`, so the
SDK retries by status: the 5xx, 429 and 408 ones, not the 4xx that a retry cannot fix).

One gateway per configuration, each made once: `gateway` (healthy, a model breaker that opens
after three keys), `narrow` (one request at a time, 2 s inference timeout), `cut_off` (LiteLLM
on a closed port, Postgres through a relay the test cuts), `guarded` (three failed
authentications per address).

Not here: INTERNAL_ERROR (nothing a client sends reaches an unexpected exception; the
integration test tests/integration/test_internal_errors.py injects one), SHUTTING_DOWN (a
drain: tests/integration/test_drain.py), REQUEST_TIMEOUT (a body sent slower than
server.body_read_timeout_seconds, which no HTTP client library does: tests/integration/test_listeners.py),
USER_NOT_FOUND_LITELLM (the admin API's, not the proxy's), QUOTA_EXCEEDED (not built yet).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import openai
import pytest

from gateway.dev.services import free_port
from tests.e2e.conftest import PROVIDER_KEY
from tests.fakes.tcp_relay import TcpRelay
from tests.support import RunningGateway, Seeded, bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "hi"}]
MAX_BODY = 64 * 1024
ACCESS = "Your API key does not have access to this model. Please check your subscription."
FAILED = ("The model service failed to answer this request. Please try again later; if it keeps failing, give your "
          "administrator the request id.")


def error(message: str, type_: str, code: str, param: str | None = None) -> dict:
    return {"message": message, "type": type_, "param": param, "code": code}


def assert_refused(exc: openai.APIStatusError, sdk_class: type, status: int, body: dict,
                   retry_after: str | None = None, **headers: str) -> None:
    """The SDK's exception for the gateway's answer: its class, status, whole body, the message
    the SDK shows, and the answer's headers (Retry-After exactly as given, or absent)."""
    assert type(exc) is sdk_class, type(exc)
    assert (exc.status_code, exc.body, exc.code) == (status, body, body["code"])
    assert exc.message == f"Error code: {status} - {body['message']}"
    answer = exc.response.headers
    assert answer["content-type"] == "application/json"
    assert answer["x-request-id"] not in ("", "-")
    assert answer.get("retry-after") == retry_after
    assert "x-should-retry" not in answer
    for name, value in headers.items():
        assert answer[name] == value
    assert PROVIDER_KEY not in exc.response.text


def sdk(url: str, key: str, **options) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, **options)


@pytest.fixture(scope="module")
async def keys(pool) -> dict[str, Seeded]:
    """Seeded before the gateways start: a gateway knows its database's models (and so makes
    them breakers) at start."""
    return {
        "ok": await seed_key(pool, models=["gpt-4o-mini", "slow-model"]),
        "revoked": await seed_key(pool, models=["gpt-4o-mini"], key_active=False),
        "expired": await seed_key(pool, models=["gpt-4o-mini"], expires_in=-60),
        "user_inactive": await seed_key(pool, models=["gpt-4o-mini"], user_active=False),
        "suspended": await seed_key(pool, models=["gpt-4o-mini"], subscriptions={"gpt-4o-mini": "suspended"}),
        **{f"broken{i}": await seed_key(pool, models=["broken-backend"]) for i in range(3)},
    }


@pytest.fixture(scope="module")
async def gateway(keys, litellm, postgres_url, redis_url) -> AsyncIterator[RunningGateway]:
    breaker = {"consecutive_failures": 3, "min_requests": 1000, "reset_timeout_seconds": 60, "min_distinct_keys": 3}
    config = make_config(postgres_url, redis_url, litellm.url, breaker=breaker, server={"max_body_bytes": MAX_BODY})
    async with running_gateway(config) as gw:
        yield gw


# --- 401 and 403: the key and what it may use ---------------------------------------------------

@pytest.mark.parametrize(
    ("who", "sdk_class", "status", "body"),
    [
        ("unknown", openai.AuthenticationError, 401, error(
            "Invalid API key. Check the key, or create a new one.", "authentication_error", "INVALID_API_KEY")),
        ("revoked", openai.AuthenticationError, 401, error(
            "This API key has been revoked. Create a new key to continue.", "authentication_error", "API_KEY_REVOKED")),
        ("expired", openai.AuthenticationError, 401, error(
            "This API key has expired. Create a new key to continue.", "authentication_error", "API_KEY_EXPIRED")),
        ("user_inactive", openai.PermissionDeniedError, 403, error(
            "Your account is deactivated. Contact your administrator.", "permission_denied_error", "USER_INACTIVE")),
        ("suspended", openai.PermissionDeniedError, 403, error(
            "Your subscription to this model is not active. Please check your subscription. (model: gpt-4o-mini)",
            "permission_denied_error", "SUBSCRIPTION_INACTIVE", "model")),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_a_key_that_cannot_be_used(gateway, keys, who, sdk_class, status, body):
    key = "sk-" + uuid.uuid4().hex if who == "unknown" else keys[who].key
    async with sdk(gateway.url, key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert_refused(caught.value, sdk_class, status, body)


async def test_no_key_at_all(gateway):
    """The SDK refuses to send a request without a key; curl does not."""
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": HI}) as r:
            assert (r.status, r.headers["content-type"], await r.json()) == (401, "application/json", {"error": error(
                "No API key provided. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
                "authentication_error", "MISSING_API_KEY")})
            assert "retry-after" not in r.headers


async def test_a_model_the_key_does_not_list(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=HI)
    assert_refused(caught.value, openai.PermissionDeniedError, 403, error(
        f"{ACCESS} (model: gpt-4o)", "permission_denied_error", "MODEL_ACCESS_DENIED", "model"))


async def test_a_model_the_key_may_not_use_is_not_found(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.models.retrieve("gpt-4o")
    assert_refused(caught.value, openai.NotFoundError, 404, error(
        "The model does not exist or your API key does not have access to it. (model: gpt-4o)",
        "not_found_error", "MODEL_NOT_FOUND", "model"))


# --- 400, 404, 405, 413, 415: the request itself ------------------------------------------------

async def test_an_empty_model_name_is_an_invalid_request(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="", messages=HI)
    assert_refused(caught.value, openai.BadRequestError, 400, error(
        "The request could not be understood. (`model` in the body must be a non-empty string)",
        "invalid_request_error", "INVALID_REQUEST"))


async def test_a_body_that_is_not_json_is_an_invalid_request(gateway, keys):
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/chat/completions", data=b'{"model": "gpt-4o-mini",',
                             headers={**bearer(keys["ok"].key), "content-type": "application/json"}) as r:
            assert (r.status, await r.json()) == (400, {"error": error(
                "The request could not be understood. (the body is not valid JSON: unexpected end of data at position 24)",
                "invalid_request_error", "INVALID_REQUEST")})
            assert "retry-after" not in r.headers


async def test_headers_over_64_kib(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                                 extra_headers={"x-filler": "a" * 70_000, "x-request-id": "trace-431"})
    assert_refused(caught.value, openai.APIStatusError, 431, error(
        "The request could not be understood. (request line and headers over 65536 bytes)",
        "invalid_request_error", "INVALID_REQUEST"), **{"x-request-id": "trace-431"})


async def test_a_request_without_a_model(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.post("/chat/completions", body={"messages": HI}, cast_to=object)
    assert_refused(caught.value, openai.BadRequestError, 400, error(
        "The request must name a model, e.g. {\"model\": \"gpt-4o\"}.", "invalid_request_error", "MODEL_REQUIRED", "model"))


async def test_a_route_the_gateway_does_not_serve(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.files.list()
        assert_refused(caught.value, openai.NotFoundError, 404, error(
            "This route does not exist on this gateway.", "not_found_error", "ROUTE_NOT_FOUND"))
        with pytest.raises(openai.NotFoundError) as caught:
            await client.files.list(extra_headers={"x-request-id": "trace-404"})
        assert caught.value.response.headers["x-request-id"] == "trace-404"  # the client's, as on every answer


@pytest.mark.parametrize(("method", "path", "allow"), [("get", "/chat/completions", "POST"), ("post", "/models", "GET")])
async def test_a_route_called_with_another_method(gateway, keys, method, path, allow):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await getattr(client, method)(path, cast_to=object)
    assert_refused(caught.value, openai.APIStatusError, 405, error(
        f"This route does not accept this HTTP method. (use {allow})", "invalid_request_error", "METHOD_NOT_ALLOWED"),
        allow=allow)


async def test_an_operator_path_called_with_another_method(gateway):
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/health/live") as r:
            assert (r.status, r.headers["allow"], await r.json()) == (405, "GET, HEAD", {"error": error(
                "This route does not accept this HTTP method. (use GET, HEAD)", "invalid_request_error",
                "METHOD_NOT_ALLOWED")})


async def test_a_form_body_where_json_is_read(gateway, keys):
    """curl -d without a Content-Type sends a form: LiteLLM would not read it as JSON."""
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/chat/completions", data={"model": "gpt-4o-mini"},
                             headers=bearer(keys["ok"].key)) as r:
            assert (r.status, r.headers["content-type"], await r.json()) == (415, "application/json", {"error": error(
                "This route does not read a body sent this way. (send the body as JSON with 'Content-Type: "
                "application/json', not application/x-www-form-urlencoded (curl -d without -H 'Content-Type: "
                "application/json' sends that))", "invalid_request_error", "UNSUPPORTED_MEDIA_TYPE")})


TOO_LARGE = error(f"The request body is too large. (limit is {MAX_BODY} bytes)", "invalid_request_error", "REQUEST_TOO_LARGE")


async def test_a_body_over_the_limit_reaches_the_sdk_as_413(gateway, keys):
    async with sdk(gateway.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 16 * MAX_BODY}])
    assert_refused(caught.value, openai.APIStatusError, 413, TOO_LARGE)


async def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(gateway, keys):
    async def chunks():
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(8):
            yield b"x" * (MAX_BODY // 2)
        yield b'"}]}'

    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "/v1/chat/completions", data=chunks(),
                             headers={**bearer(keys["ok"].key), "content-type": "application/json"}) as r:
            assert (r.status, await r.json()) == (413, {"error": TOO_LARGE})


# --- 5xx from the model service -----------------------------------------------------------------

async def test_a_broken_backend_fails_with_litellm_error_until_its_breaker_opens(gateway, keys):
    """broken-backend's provider refuses connections; LiteLLM answers 500. Three keys see the
    gateway's LITELLM_ERROR (with their request id); then the model's breaker is open."""
    for i in range(3):
        request_id = f"req-broken-{uuid.uuid4().hex[:8]}"
        async with sdk(gateway.url, keys[f"broken{i}"].key) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model="broken-backend", messages=HI,
                                                     extra_headers={"x-request-id": request_id})
        assert_refused(caught.value, openai.InternalServerError, 500, error(
            f"{FAILED} (request id: {request_id})", "api_error", "LITELLM_ERROR"), **{"x-request-id": request_id})
    async with sdk(gateway.url, keys["broken0"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="broken-backend", messages=HI)
    retry_after = caught.value.response.headers.get("retry-after", "")
    assert retry_after.isdigit() and 50 <= int(retry_after) <= 60  # reset_timeout_seconds, less the time gone
    assert_refused(caught.value, openai.InternalServerError, 503, error(
        "This model is temporarily unavailable. Please try again later.", "service_unavailable_error",
        "MODEL_UNAVAILABLE"), retry_after=retry_after)


@pytest.fixture(scope="module")
async def narrow(keys, litellm, postgres_url, redis_url) -> AsyncIterator[RunningGateway]:
    """One request in flight at a time; a generation may take 2 s (slow-model takes 3, never less)."""
    config = make_config(postgres_url, redis_url, litellm.url, server={"max_concurrency": 1},
                         litellm={"request_timeout_seconds": 2.0})
    async with running_gateway(config) as gw:
        yield gw


async def test_a_generation_longer_than_the_request_timeout(narrow, keys):
    async with sdk(narrow.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="slow-model", messages=HI)
    assert_refused(caught.value, openai.InternalServerError, 504, error(
        "The model service did not answer in time. Please try again later.", "timeout_error", "LITELLM_TIMEOUT"),
        retry_after="1")
    assert narrow.state.breaker.state == "closed"  # a slow generation is not LiteLLM failing


async def test_a_request_over_the_concurrency_bound(narrow, keys):
    """The one slot is held by a request whose body has not come yet (no clock involved)."""
    host, port = urlsplit(narrow.url).hostname, urlsplit(narrow.url).port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + keys["ok"].key.encode() + b"\r\nContent-Length: 100\r\n\r\n")
        await writer.drain()
        await eventually(lambda: narrow.app.in_flight == 1, timeout=10)
        async with sdk(narrow.url, keys["ok"].key) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    finally:
        writer.close()
        await writer.wait_closed()
    assert_refused(caught.value, openai.InternalServerError, 503, error(
        "The gateway is serving as many requests as it can. Please try again in a moment.",
        "service_unavailable_error", "SERVER_BUSY"), retry_after="1")
    await eventually(lambda: narrow.app.in_flight == 0, timeout=10)
    async with sdk(narrow.url, keys["ok"].key) as client:  # the slot free again: served
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert reply.choices[0].message.content == "Hello from the mock gpt-4o-mini."


# --- 503: what the gateway depends on is unreachable --------------------------------------------

@pytest.fixture(scope="module")
async def cut_off(keys, postgres_url) -> AsyncIterator[tuple[RunningGateway, TcpRelay]]:
    """LiteLLM on a port where nothing listens; Postgres through a relay a test cuts. No Redis:
    the key cache is this process's alone."""
    parts = urlsplit(postgres_url)
    relay = await TcpRelay.start(parts.hostname, parts.port)
    database_url = parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{relay.port}")).geturl()
    config = make_config(database_url, None, f"http://127.0.0.1:{free_port()}",
                         breaker={"consecutive_failures": 2, "reset_timeout_seconds": 30})
    try:
        async with running_gateway(config) as gw:
            yield gw, relay
    finally:
        await relay.cut()


async def test_litellm_unreachable_then_its_breaker_open(cut_off, keys):
    """The first failure says what happened and to retry in a second; the second opens LiteLLM's
    breaker (consecutive_failures: 2), and from then on the answer comes without trying LiteLLM,
    with the breaker's open period as Retry-After."""
    gw, _ = cut_off
    async with sdk(gw.url, keys["ok"].key) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert_refused(caught.value, openai.InternalServerError, 503, error(
            "Service temporarily unavailable. Please try again later. (LiteLLM unreachable)",
            "service_unavailable_error", "LITELLM_UNAVAILABLE"), retry_after="1")
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert gw.state.breaker.state == "open"
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    retry_after = caught.value.response.headers.get("retry-after", "")
    assert retry_after.isdigit() and 20 <= int(retry_after) <= 30  # reset_timeout_seconds, less the time gone
    assert_refused(caught.value, openai.InternalServerError, 503, error(
        "Service temporarily unavailable. Please try again later.", "service_unavailable_error",
        "LITELLM_UNAVAILABLE"), retry_after=retry_after)


async def test_the_key_store_unreachable_for_a_key_not_cached(cut_off, keys):
    gw, relay = cut_off
    await relay.cut()
    async with sdk(gw.url, keys["revoked"].key) as client:  # never asked for through this gateway: not cached
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert_refused(caught.value, openai.InternalServerError, 503, error(
        "API keys cannot be checked right now. Please try again later.", "service_unavailable_error",
        "KEY_STORE_UNAVAILABLE"), retry_after="1")


# --- 429: failed authentications from one address -----------------------------------------------

LIMIT = 3
WINDOW = 60


@pytest.fixture(scope="module")
async def guarded(litellm, postgres_url) -> AsyncIterator[RunningGateway]:
    """Three failed authentications per address and minute, counted in this process (no Redis,
    so other tests' failures from 127.0.0.1 do not count)."""
    config = make_config(postgres_url, None, litellm.url,
                         security={"failed_auth_limit": LIMIT, "failed_auth_window_seconds": WINDOW})
    async with running_gateway(config) as gw:
        yield gw


async def test_too_many_failed_authentications_from_one_address(guarded, keys):
    left = WINDOW - time.time() % WINDOW  # windows are wall-clock minutes; the failures must share one
    if left < 5:
        await asyncio.sleep(left)  # not a synchronisation: waiting for the next window to begin
    for _ in range(LIMIT):
        async with sdk(guarded.url, "sk-" + uuid.uuid4().hex) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    for key in ("sk-" + uuid.uuid4().hex, keys["ok"].key):  # one failure too many; then even a good key
        async with sdk(guarded.url, key) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        retry_after = caught.value.response.headers.get("retry-after", "")
        assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
        assert_refused(caught.value, openai.RateLimitError, 429, error(
            "Too many requests. Please wait before retrying. (too many failed authentications from this address)",
            "rate_limit_error", "RATE_LIMITED"), retry_after=retry_after)
