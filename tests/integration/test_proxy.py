"""The enforcing proxy on real Postgres + Redis, with the fake upstream behind it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.fakes.upstream import CHAT_RESPONSE
from tests.support import MASTER_KEY, bearer, eventually, make_config, running_gateway, seed_key

pytestmark = pytest.mark.integration

DENIED = {
    "error": {
        "message": "Your API key does not have access to this model. Please check your subscription. (model: gpt-4o)",
        "type": "permission_denied_error",
        "param": "model",
        "code": "MODEL_ACCESS_DENIED",
    }
}


@pytest.fixture
async def gateway(pool, redis_url, postgres_url, fake_upstream):
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream.url)) as gw:
        yield gw


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def refused(code: str, message: str, type_: str = "permission_denied_error", param: str | None = "model") -> dict:
    """A whole error body, as a client reads it."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_allowed_request_is_forwarded_and_answered_byte_for_byte(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
        body = await r.read()
        assert r.status == 200
        assert "x-upstream" not in r.headers and "x-litellm-call-id" not in r.headers  # headers pass by allow-list
        assert r.headers["x-request-id"]
    assert body == orjson.dumps(dict(CHAT_RESPONSE, model="gpt-4o-mini"))
    [seen] = fake_upstream.seen
    assert seen.path == "/v1/chat/completions"
    # service_key mode: LiteLLM gets the service key, never the client's, and the user id is filled in
    assert seen.headers["Authorization"] == f"Bearer {MASTER_KEY}"
    assert seeded.key not in str(seen.headers)
    assert orjson.loads(seen.body)["user"] == seeded.user_id
    assert seen.headers["x-request-id"] == r.headers["x-request-id"]


async def test_a_plain_answer_of_many_reads_arrives_whole(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.answer_padding = 3_000_000  # the gateway reads it in many chunks and sends the last with the end
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
        body = await r.read()
        assert r.status == 200 and int(r.headers["content-length"]) == len(body)
    answer = orjson.loads(body)
    assert len(answer["padding"]) == 3_000_000 and answer["usage"] == CHAT_RESPONSE["usage"]


async def test_upstream_gets_the_clients_headers_and_none_invented(gateway, pool, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    # A client that sends no Accept, Accept-Encoding or User-Agent: LiteLLM must not get them either
    # (aiohttp would add all three; a gzip answer the client did not ask for would pass through undecoded).
    async with aiohttp.ClientSession(skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent")) as bare:
        headers = {**bearer(seeded.key), "x-trace": "t1"}
        async with bare.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=headers) as r:
            assert r.status == 200
    [seen] = fake_upstream.seen
    assert sorted(name.lower() for name in seen.headers) == [  # service_key mode: the end user is the gateway's
        "authorization", "content-length", "content-type", "host", "x-forwarded-for", "x-litellm-customer-id",
        "x-request-id", "x-trace"
    ]
    assert seen.headers["x-litellm-customer-id"] == seeded.user_id
    fake_upstream.seen.clear()
    async with aiohttp.ClientSession() as usual:  # and what the client does send goes through as sent
        headers = {**bearer(seeded.key), "Accept-Encoding": "br", "User-Agent": "OpenAI/Python 1.0"}
        async with usual.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=headers) as r:
            assert r.status == 200
    [seen] = fake_upstream.seen
    assert (seen.headers["accept-encoding"], seen.headers["user-agent"], seen.headers["accept"]) == ("br", "OpenAI/Python 1.0", "*/*")


async def test_client_user_field_is_replaced_by_the_keys_user(gateway, pool, http, fake_upstream):
    """service_key mode: LiteLLM bills the end user it reads from the body's `user` (after its
    headers): that is the key's user, whatever the client sent (issue 13; the field was kept before)."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    payload = orjson.dumps(chat("gpt-4o-mini", user="end-user-7"))
    async with http.post(gateway.url + "/chat/completions", data=payload,
                         headers={**bearer(seeded.key), "content-type": "application/json"}) as r:
        assert r.status == 200
    [seen] = fake_upstream.seen
    assert orjson.loads(seen.body) == chat("gpt-4o-mini", user=seeded.user_id)
    assert seen.body.count(b'"user":') == 1  # one key, not a duplicate that a parser may read either way


async def test_denied_model_is_403_and_never_forwarded(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o"), headers=bearer(seeded.key)) as r:
        assert r.status == 403
        assert await r.json() == DENIED
    assert fake_upstream.seen == []


async def test_inactive_subscription_is_403_subscription_inactive(gateway, pool, http):
    seeded = await seed_key(pool, models=["gpt-4o"], subscriptions={"gpt-4o": "suspended"})
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o"), headers=bearer(seeded.key)) as r:
        assert (r.status, await r.json()) == (403, refused(
            "SUBSCRIPTION_INACTIVE",
            "Your subscription to this model is not active. Please check your subscription. (model: gpt-4o)"))


async def test_wildcard_grants_only_subscribed_models(gateway, pool, http):
    seeded = await seed_key(pool, models=["openai/*"], subscriptions={"openai/gpt-4o": "active"})
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("openai/gpt-4o"), headers=bearer(seeded.key)) as r:
        assert r.status == 200
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("openai/o3"), headers=bearer(seeded.key)) as r:
        assert (r.status, await r.json()) == (403, refused(
            "MODEL_ACCESS_DENIED",
            "Your API key does not have access to this model. Please check your subscription. (model: openai/o3)"))


async def test_a_denied_fallback_denies_the_request(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    body = chat("gpt-4o-mini", fallbacks=["gpt-4o"])
    async with http.post(gateway.url + "/v1/chat/completions", json=body, headers=bearer(seeded.key)) as r:
        assert r.status == 403
        assert await r.json() == DENIED
    assert fake_upstream.seen == []


MISSING = "No API key provided. Send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
INVALID = "Invalid API key. Check the key, or create a new one."


@pytest.mark.parametrize(
    ("headers", "code", "message"),
    [
        ({}, "MISSING_API_KEY", MISSING),
        ({"Authorization": "Bearer sk-not-a-key"}, "INVALID_API_KEY", INVALID),
        ({"x-api-key": "sk-not-a-key-either"}, "INVALID_API_KEY", INVALID),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "MISSING_API_KEY", MISSING),
    ],
)
async def test_missing_or_unknown_key_is_401(gateway, http, fake_upstream, headers, code, message):
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o"), headers=headers) as r:
        assert (r.status, await r.json()) == (401, refused(code, message, "authentication_error", param=None))
    assert fake_upstream.seen == []


async def test_x_api_key_header_authenticates(gateway, pool, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers={"x-api-key": seeded.key}) as r:
        assert r.status == 200


@pytest.mark.parametrize(
    ("setup", "status", "expected"),
    [
        ({"key_active": False}, 401, refused("API_KEY_REVOKED", "This API key has been revoked. Create a new key to continue.",
                                             "authentication_error", param=None)),
        ({"expires_in": -60}, 401, refused("API_KEY_EXPIRED", "This API key has expired. Create a new key to continue.",
                                           "authentication_error", param=None)),
        ({"user_active": False}, 403, refused("USER_INACTIVE", "Your account is deactivated. Contact your administrator.",
                                              param=None)),
    ],
)
async def test_unusable_keys(gateway, pool, http, setup, status, expected):
    seeded = await seed_key(pool, models=["gpt-4o-mini"], **setup)
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
        assert (r.status, await r.json()) == (status, expected)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"{not json", "the body is not valid JSON"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"messages": []}', None),
        (b'{"model": 7}', "`model` in the body must be a non-empty string"),
        (b'{"model": "gpt-4o-mini", "api_base": "http://evil"}', "the `api_base` field is not allowed"),
    ],
)
async def test_bad_requests_are_400_and_never_forwarded(gateway, pool, http, fake_upstream, payload, detail):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with http.post(gateway.url + "/v1/chat/completions", data=payload,
                         headers={**bearer(seeded.key), "content-type": "application/json"}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    if detail is None:
        assert error["code"] == "MODEL_REQUIRED"
    else:
        assert error["code"] == "INVALID_REQUEST" and detail in error["message"]
    assert fake_upstream.seen == []


async def test_conflicting_model_in_query_is_400(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini", "gpt-4o"])
    async with http.post(gateway.url + "/v1/chat/completions?model=gpt-4o", json=chat("gpt-4o-mini"),
                         headers=bearer(seeded.key)) as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"] == (
            "The request could not be understood. (conflicting model names: 'gpt-4o-mini' in the body, 'gpt-4o' in the query)"
        )
    assert fake_upstream.seen == []


async def test_path_model_is_checked(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    url = gateway.url + "/openai/deployments/gpt-4o/chat/completions"
    async with http.post(url, json={"messages": []}, headers={"api-key": seeded.key}) as r:
        assert (r.status, await r.json()) == (403, DENIED)
    url = gateway.url + "/openai/deployments/gpt-4o-mini/chat/completions"
    async with http.post(url, json={"messages": []}, headers={"api-key": seeded.key}) as r:
        assert r.status == 200
    assert fake_upstream.paths() == ["/openai/deployments/gpt-4o-mini/chat/completions"]


async def test_multipart_model_is_checked(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["whisper-1"])
    for model, status in (("gpt-4o", 403), ("whisper-1", 200)):
        form = aiohttp.FormData()
        form.add_field("model", model)
        form.add_field("file", b"RIFF....WAVE", filename="a.wav", content_type="audio/wav")
        async with http.post(gateway.url + "/v1/audio/transcriptions", data=form, headers=bearer(seeded.key)) as r:
            assert r.status == status
            if status == 403:
                assert await r.json() == DENIED
    [seen] = fake_upstream.seen
    assert b"RIFF....WAVE" in seen.body


async def test_body_over_the_limit_is_413(pool, redis_url, postgres_url, fake_upstream, http):
    config = make_config(postgres_url, redis_url, fake_upstream.url, server={"max_body_bytes": 1000})
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(config) as gw:
        big = chat("gpt-4o-mini", padding="x" * 2000)
        async with http.post(gw.url + "/v1/chat/completions", json=big, headers=bearer(seeded.key)) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "REQUEST_TOO_LARGE"
    assert fake_upstream.seen == []


async def test_models_list_is_filtered_by_policy(gateway, pool, http):
    seeded = await seed_key(pool, models=["gpt-4o-mini", "openai/*"], subscriptions={"gpt-4o-mini": "active", "openai/gpt-4o": "active"})
    async with http.get(gateway.url + "/v1/models", headers=bearer(seeded.key)) as r:
        assert r.status == 200
        listing = await r.json()
    assert listing["object"] == "list"
    assert sorted(m["id"] for m in listing["data"]) == ["gpt-4o-mini", "openai/gpt-4o"]
    async with http.get(gateway.url + "/v1/models/gpt-4o", headers=bearer(seeded.key)) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "MODEL_NOT_FOUND"
    async with http.get(gateway.url + "/v1/models/openai/gpt-4o", headers=bearer(seeded.key)) as r:
        assert r.status == 200
        assert (await r.json())["id"] == "openai/gpt-4o"


async def test_stream_arrives_chunk_by_chunk(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.chunk_gap = 0.3
    fake_upstream.stream_chunks = 4
    arrivals: list[tuple[float, bytes]] = []
    started = time.perf_counter()
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini", stream=True),
                         headers=bearer(seeded.key)) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for chunk in r.content.iter_any():
            arrivals.append((time.perf_counter() - started, chunk))
    body = b"".join(c for _, c in arrivals)
    assert body.count(b"data: ") == 5 and body.endswith(b"data: [DONE]\n\n")  # no usage chunk: not asked for
    assert b'"usage"' not in body
    first_token_at = next(t for t, c in arrivals if b"tok0" in c)
    last_at = arrivals[-1][0]
    # The upstream spends >= 0.9 s between first and last chunk: a buffering proxy would deliver all at once.
    assert last_at - first_token_at >= 0.8
    assert len(arrivals) >= 4


async def test_a_providers_429_reaches_the_client_in_openai_shape(gateway, pool, http, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault, fake_upstream.status = "status", 429
    async with http.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
        assert r.status == 429
        # LiteLLM's "None" strings become OpenAI's values (policies/scrub.py)
        assert await r.json() == {"error": {"message": "upstream says 429", "type": "rate_limit_error", "param": None, "code": "429"}}


async def test_client_disconnect_cancels_the_upstream_request(gateway, pool, fake_upstream):
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.fault, fake_upstream.delay = "slow", 30
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(
            session.post(gateway.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key))
        )
        await eventually(lambda: len(fake_upstream.seen) == 1, timeout=5)
        request.cancel()
    await eventually(lambda: fake_upstream.cancelled == 1, timeout=5)


async def test_revocation_reaches_a_second_instance_within_one_second(pool, redis_url, postgres_url, fake_upstream, http):
    config = make_config(postgres_url, redis_url, fake_upstream.url)
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    async with running_gateway(config) as first, running_gateway(config) as second:
        for gw in (first, second):
            await eventually(lambda gw=gw: gw.state.invalidator.postgres_listening.is_set(), timeout=10)
            async with http.post(gw.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
                assert r.status == 200  # and now cached in both instances
        await pool.execute("UPDATE api_keys SET revoked_at = now(), is_active = false WHERE id = $1", seeded.key_id)

        async def denied() -> bool:
            async with http.post(second.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
                return r.status == 401 and (await r.json())["error"]["code"] == "API_KEY_REVOKED"

        took = await eventually(denied, timeout=1.0)
        assert took < 1.0


async def test_passthrough_forwards_exactly_the_key_the_gateway_checked(pool, redis_url, postgres_url, fake_upstream, http):
    config = make_config(postgres_url, redis_url, fake_upstream.url, litellm={"auth": "passthrough", "sync_users": False})
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    fake_upstream.virtual_keys.add(seeded.key)  # a LiteLLM virtual key: "LiteLLM" checks it too
    headers = {"api-key": seeded.key, "x-litellm-api-key": "sk-someone-elses", "x-api-key": "sk-third"}
    async with running_gateway(config) as gw:
        async with http.post(gw.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=headers) as r:
            assert r.status == 200
    [seen] = fake_upstream.seen
    assert seen.headers["Authorization"] == f"Bearer {seeded.key}"
    assert [h for h in ("x-litellm-api-key", "x-api-key", "api-key") if h in seen.headers] == []
    assert orjson.loads(seen.body) == chat("gpt-4o-mini")  # passthrough: no `user` spliced in


async def test_hop_by_hop_headers_are_not_forwarded(gateway, pool, fake_upstream):
    """RFC 9110 7.6.1: Connection, the headers it names, TE, Proxy-* stay on their hop."""
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    body = orjson.dumps(chat("gpt-4o-mini"))
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + seeded.key.encode() + b"\r\n"
        b"Connection: close, X-Hop-Secret\r\nX-Hop-Secret: 1\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n"
        b"X-End-To-End: kept\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 200")
    [seen] = fake_upstream.seen
    assert [h for h in ("X-Hop-Secret", "TE", "Proxy-Authorization") if h in seen.headers] == []
    assert seen.headers["X-End-To-End"] == "kept"


async def test_passthrough_a_key_litellm_does_not_hold_is_refused_by_litellm(pool, redis_url, postgres_url, fake_upstream, http):
    """The gateway's check is not the only one: LiteLLM checks the virtual key it is given. Its 401
    after the gateway's own check passed is drift between the two systems, the platform's fault:
    the client gets the gateway's 502 LITELLM_ERROR with the request id (README, "What clients see")."""
    config = make_config(postgres_url, redis_url, fake_upstream.url, litellm={"auth": "passthrough", "sync_users": False})
    seeded = await seed_key(pool, models=["gpt-4o-mini"])  # in the gateway's database only
    async with running_gateway(config) as gw:
        async with http.post(gw.url + "/v1/chat/completions", json=chat("gpt-4o-mini"), headers=bearer(seeded.key)) as r:
            status, body, request_id = r.status, await r.json(), r.headers["x-request-id"]
    assert len(fake_upstream.seen) == 1
    assert (status, body) == (502, {"error": {
        "message": "The model service failed to answer this request. Please try again later; if it keeps "
                   f"failing, give your administrator the request id. (request id: {request_id})",
        "type": "api_error", "param": None, "code": "LITELLM_ERROR"}})
