"""One reading of every request (issue 13), served by uvicorn, with the fake upstream behind:
what the gateway refuses never reaches LiteLLM, and what it serves reaches LiteLLM as it was
read, with the gateway's credentials and attribution and none of the client's.

Requests go out byte for byte on a socket (tests.support.raw_post): HTTP clients normalise
the very headers under test.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from gateway.app import create_app
from gateway.config import ConfigError
from tests.support import MASTER_KEY, make_config, raw_post, running_gateway, seed_key

pytestmark = pytest.mark.integration

CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
LLAMA = b'{"model": "llama-3-8b", "messages": [{"role": "user", "content": "hi"}]}'
FORM_ATTACK = b'{"model": "gpt-4o-mini", "input": "x", "pad": "&model=text-embedding-3-small&input=hi&"}'
SEND_JSON = "send the body as JSON with 'Content-Type: application/json'"


def media_error(detail: str) -> dict:
    return {"error": {"message": f"This route does not read a body sent this way. ({detail})",
                      "type": "invalid_request_error", "param": None, "code": "UNSUPPORTED_MEDIA_TYPE"}}


@pytest.fixture(scope="module")
async def gateway(pool, redis_url, postgres_url, fake_upstream_server):
    async with running_gateway(make_config(postgres_url, redis_url, fake_upstream_server.url)) as gw:
        yield gw


@pytest.fixture
async def key(pool) -> tuple[str, str]:
    """A key allowed gpt-4o-mini only (and whisper-1): (key, its user id)."""
    seeded = await seed_key(pool, models=["gpt-4o-mini", "whisper-1"])
    return seeded.key, seeded.user_id


async def test_a_form_encoded_body_is_refused_with_415(gateway, key, fake_upstream):
    """Issue 13: LiteLLM read this body as a form (model=text-embedding-3-small) while the
    gateway read it as JSON (gpt-4o-mini). `curl -d` without -H sends exactly this type."""
    status, headers, body = await raw_post(gateway.url, "/v1/embeddings", [
        ("Authorization", f"Bearer {key[0]}"), ("Content-Type", "application/x-www-form-urlencoded")], FORM_ATTACK)
    assert status == 415
    assert orjson.loads(body) == media_error(
        f"{SEND_JSON}, not application/x-www-form-urlencoded (curl -d without -H 'Content-Type: application/json' sends that)")
    assert headers["content-type"] == "application/json" and headers["x-request-id"]
    assert fake_upstream.seen == []


@pytest.mark.parametrize(
    ("content_type", "status", "detail"),
    [
        ("text/plain", 415, f"{SEND_JSON}, not text/plain"),
        ("Application/Json", 400, "conflicting model names: 'gpt-4o-mini' in the path, 'llama-3-8b' in the body"),
        (None, 400, "conflicting model names: 'gpt-4o-mini' in the path, 'llama-3-8b' in the body"),
    ],
    ids=["text-plain", "json-case", "none"],
)
async def test_a_path_route_reads_every_body(gateway, key, fake_upstream, content_type, status, detail):
    """Issue 13: on /openai/deployments/{model}/... these bodies were not read at all."""
    headers = [("api-key", key[0])] + ([("Content-Type", content_type)] if content_type else [])
    got, _, body = await raw_post(gateway.url, "/openai/deployments/gpt-4o-mini/chat/completions", headers, LLAMA)
    assert got == status
    error = orjson.loads(body)["error"]
    assert error["message"].endswith(f"({detail})")
    assert fake_upstream.seen == []


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([("Content-Type", "application/json"), ("Content-Type", "application/x-www-form-urlencoded")],
         "more than one Content-Type header"),
        ([("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
         "send the body uncompressed, without Content-Encoding"),
        ([(b"Content-Type", b"application/x-www-form-urlencoded\xa0")], "the Content-Type header must be printable ASCII"),
    ],
    ids=["two-types", "gzip", "nbsp"],
)
async def test_headers_that_change_the_reading_are_refused(gateway, key, fake_upstream, headers, detail):
    got, _, body = await raw_post(gateway.url, "/v1/embeddings", [("Authorization", f"Bearer {key[0]}"), *headers],
                                  FORM_ATTACK)
    assert (got, orjson.loads(body)) == (415, media_error(detail))
    assert fake_upstream.seen == []


async def test_a_transcription_must_be_multipart(gateway, key, fake_upstream):
    got, _, body = await raw_post(gateway.url, "/v1/audio/transcriptions", [
        ("Authorization", f"Bearer {key[0]}"), ("Content-Type", "application/x-www-form-urlencoded")], b"model=whisper-1")
    assert (got, orjson.loads(body)) == (415, media_error(
        "send the body as multipart/form-data (with its boundary) in 'Content-Type'"))
    assert fake_upstream.seen == []


@pytest.mark.parametrize("content_type", ["Application/Json; charset=utf-8", "application/json;charset=UTF-8", None])
async def test_json_in_any_spelling_is_served_as_sent(gateway, key, fake_upstream, content_type):
    headers = [("Authorization", f"Bearer {key[0]}")] + ([("Content-Type", content_type)] if content_type else [])
    got, _, _ = await raw_post(gateway.url, "/v1/chat/completions", headers, CHAT)
    assert got == 200
    [seen] = fake_upstream.seen
    assert seen.headers.get("Content-Type") == content_type  # the type the gateway read by, unchanged
    assert orjson.loads(seen.body) == {**orjson.loads(CHAT), "user": key[1]}


async def test_connection_cannot_remove_the_content_type(gateway, key, fake_upstream):
    """A Connection header names hop-by-hop headers; never the one the body was read by."""
    headers = [("Authorization", f"Bearer {key[0]}"), ("Content-Type", "multipart/form-data; boundary=XyZ"),
               ("Connection", "content-type")]
    form = (b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n--XyZ--\r\n')
    got, _, _ = await raw_post(gateway.url, "/v1/audio/transcriptions", headers, form)
    assert got == 200
    [seen] = fake_upstream.seen
    assert seen.headers["Content-Type"] == "multipart/form-data; boundary=XyZ"
    assert seen.body == form  # a form is forwarded byte for byte
    assert seen.headers["x-litellm-customer-id"] == key[1]  # attribution by header on every route


# -- credentials and attribution ---------------------------------------------------------------------------

CLIENT_CREDENTIALS = [
    ("x-litellm-api-key", "sk-someone-elses"), ("x-api-key", "sk-third"), ("x-goog-api-key", "AIza-client"),
    ("Ocp-Apim-Subscription-Key", "apim-client"), ("Cookie", "token=ui-session"),
]
CLIENT_ATTRIBUTION = [("x-litellm-end-user-id", "victim"), ("X-LiteLLM-Customer-Id", "victim")]


async def test_service_key_mode_attributes_every_request_to_the_keys_user(gateway, key, fake_upstream):
    """LiteLLM bills the end user it finds first in x-litellm-customer-id, x-litellm-end-user-id, then
    `user`, then metadata (auth_utils.get_end_user_id_from_request_body): the client sets none of them."""
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [], "user": "victim",
                         "metadata": {"user_id": "victim"}, "litellm_metadata": {"user": "victim"}})
    headers = [("Authorization", f"Bearer {key[0]}"), ("Content-Type", "application/json"),
               *CLIENT_CREDENTIALS, *CLIENT_ATTRIBUTION]
    got, _, _ = await raw_post(gateway.url, "/v1/chat/completions", headers, body)
    assert got == 200
    [seen] = fake_upstream.seen
    assert seen.headers["Authorization"] == f"Bearer {MASTER_KEY}"
    assert seen.headers.getall("x-litellm-customer-id") == [key[1]]
    sent = {name.lower() for name in seen.headers}
    assert sent.isdisjoint({name.lower() for name, _ in CLIENT_CREDENTIALS} | {"x-litellm-end-user-id"})
    assert orjson.loads(seen.body)["user"] == key[1]  # metadata is left: the header and `user` come first


@pytest.mark.parametrize(
    ("target", "body", "user"),
    [
        ("/openai/deployments/gpt-4o-mini/chat/completions", b'{"messages": []}', "filled"),
        ("/v1/moderations", b'{"model": "gpt-4o-mini", "input": "x"}', None),
        ("/v1/moderations", b'{"model": "gpt-4o-mini", "input": "x", "user": "victim"}', "filled"),
        ("/v1/embeddings", b'  {"model": "gpt-4o-mini", "input": "x", "user": "\\u0076ictim"}\n', "filled"),
    ],
    ids=["path-route", "route-without-user", "route-without-user-but-sent", "escaped-user"],
)
async def test_the_body_user_is_the_keys_wherever_there_is_one(gateway, key, fake_upstream, target, body, user):
    got, _, _ = await raw_post(gateway.url, target, [("api-key", key[0]), ("Content-Type", "application/json")], body)
    assert got == 200
    [seen] = fake_upstream.seen
    assert orjson.loads(seen.body).get("user") == (key[1] if user else None)
    if user is None:
        assert seen.body == body  # nothing to edit: the bytes read


async def test_passthrough_forwards_exactly_the_authenticated_key(pool, redis_url, postgres_url, fake_upstream):
    """passthrough: the one key the gateway checked, as Bearer; no other credential header, the
    configured LiteLLM key header (general_settings.litellm_key_header_name) included."""
    config = make_config(postgres_url, redis_url, fake_upstream.url,
                         litellm={"auth": "passthrough", "key_header_name": "X-My-LiteLLM-Key"})
    seeded = await seed_key(pool, models=["gpt-4o-mini"])
    headers = [("api-key", seeded.key), ("Content-Type", "application/json"), *CLIENT_CREDENTIALS,
               ("x-my-litellm-key", "sk-someone-elses"), ("Authorization", "Basic dXNlcjpwYXNz")]
    fake_upstream.virtual_keys.add(seeded.key)  # LiteLLM holds it (passthrough: a LiteLLM virtual key)
    async with running_gateway(config) as gw:
        got, _, _ = await raw_post(gw.url, "/v1/chat/completions", headers, CHAT)
    assert got == 200
    [seen] = fake_upstream.seen
    assert seen.headers.getall("Authorization") == [f"Bearer {seeded.key}"]
    sent = {name.lower() for name in seen.headers}
    assert sent.isdisjoint({name.lower() for name, _ in CLIENT_CREDENTIALS} | {"x-my-litellm-key", "api-key"})
    assert seen.body == CHAT  # passthrough: the bytes read, no `user` spliced in


async def test_service_key_mode_without_litellm_api_key_does_not_start(postgres_url, fake_upstream):
    """It used to start with a warning and send every request to LiteLLM without a key; now the
    lifespan (every way of serving: `serve` checks before its workers start, tests/integration/
    test_cli.py) refuses with the variable's name."""
    config = make_config(postgres_url, None, fake_upstream.url)
    config = dataclasses.replace(config, litellm=dataclasses.replace(config.litellm, api_key=None))
    app = create_app(config)
    with pytest.raises(ConfigError, match="^LITELLM_API_KEY: required when litellm.auth is service_key"):
        async with app.lifespan(app.starlette):
            pass  # pragma: no cover - never serves
