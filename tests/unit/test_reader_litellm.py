"""The differential test of gateway/serving/reader.py: LiteLLM's own body reader is the oracle.

For each request (route, headers, query string, body) the gateway either refuses it, or every
model name LiteLLM would act on is in the gateway's facts, and no field the gateway refuses is
in LiteLLM's reading. LiteLLM's reading is what its code does with the same bytes, in a
Starlette Request as FastAPI builds it: `read_request_body` (the auth-time read, which JSON
routes' handlers reuse), `orjson.loads` of the bytes (the images, speech, moderations and
rerank handlers), `get_form_data` (the transcription handler), the query string's `model`
(FastAPI's `model` argument) and the path's, and `request_fallback_model_names` (the
fallback targets LiteLLM's own checks walk). A request LiteLLM refuses (its reader raises)
acts on nothing.

Two corpora: a table of the requests issue 13 found or that a reader of LiteLLM's proxy
would try, each with the gateway's expected verdict, and a hypothesis-generated one
(content types with parameters, case variants and duplicates, none at all; bodies valid in
two syntaxes; duplicate JSON keys; nested fallbacks; path, body and query models; forms
with repeated and odd fields). The lists the gateway keeps of LiteLLM's fields and headers
are checked against the installed LiteLLM's too.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import parse_qs

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list at import

from litellm.constants import STANDARD_CUSTOMER_ID_HEADERS  # noqa: E402
from litellm.proxy.auth import auth_utils  # noqa: E402
from litellm.proxy.common_utils.http_parsing_utils import get_form_data, read_request_body  # noqa: E402
from litellm.router_utils.clientside_credential_handler import clientside_credential_keys  # noqa: E402
from litellm.types.proxy.auth.special_headers import SpecialHeaders  # noqa: E402
from litellm.types.router import CredentialLiteLLMParams  # noqa: E402

from gateway.errors import GatewayError  # noqa: E402
from gateway.serving.reader import read  # noqa: E402
from gateway.serving.routes import RouteTable  # noqa: E402
from gateway.serving.upstream import ATTRIBUTION_HEADERS, CREDENTIAL_HEADERS  # noqa: E402
from policies.records import Deny  # noqa: E402
from policies.requests import FALLBACK_FIELDS, REFUSED_FIELDS, request_facts  # noqa: E402

pytestmark = pytest.mark.unit

for noisy in ("LiteLLM Proxy", "LiteLLM", "python_multipart", "python_multipart.multipart"):
    logging.getLogger(noisy).setLevel(logging.CRITICAL)  # malformed bodies are the point here

ROUTES = RouteTable()
# The handlers that read the bytes with orjson whatever the Content-Type says.
ORJSON_HANDLERS = frozenset({"/v1/images/generations", "/v1/audio/speech", "/v1/moderations", "/v1/rerank"})
MODELS = ("gpt-4o-mini", "text-embedding-3-small", "llama-3-8b")


@dataclass(frozen=True)
class Sent:
    """One request as the gateway and LiteLLM both get it."""

    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    query: bytes = b""


# -- the oracle -------------------------------------------------------------------------------------------


async def _litellm_readings(sent: Sent) -> list[dict[str, Any]] | None:
    """Every reading LiteLLM makes of the request's body; None when LiteLLM refuses the request."""

    async def receive() -> dict:
        return {"type": "http.request", "body": sent.body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": sent.path, "raw_path": sent.path.encode(),
             "query_string": sent.query, "headers": list(sent.headers), "root_path": ""}
    request = Request(scope, receive)  # one Request, as FastAPI hands the dependency and the handler
    try:
        return await _read_as_litellm(sent, request)
    finally:
        await request.close()  # the form's uploads, as Starlette closes them after the response


async def _read_as_litellm(sent: Sent, request: Request) -> list[dict[str, Any]] | None:
    try:
        readings = [dict(await read_request_body(request))]
    except Exception:  # ProxyException: LiteLLM answers 400 before any handler runs
        return None
    route, _ = ROUTES.match(sent.path.encode())
    if route.model_source == "multipart":
        try:
            readings.append(await get_form_data(request))
        except Exception:
            return None
    elif route.name in ORJSON_HANDLERS:
        try:
            parsed = orjson.loads(sent.body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict):
            return None
        readings.append(parsed)
    return readings


def litellm_reads(sent: Sent) -> list[dict[str, Any]] | None:
    return asyncio.run(_litellm_readings(sent))


def acted_on(sent: Sent, readings: list[dict[str, Any]], path_model: str | None) -> set[str]:
    """The model names LiteLLM acts on, checks or reports: the path's, the query's (FastAPI's
    `model` argument), each reading's `model` and fallback targets."""
    names = {path_model} if path_model else set()
    names.update(v for v in parse_qs(sent.query.decode("latin-1"), keep_blank_values=True).get("model", []) if v)
    for reading in readings:
        model = reading.get("model")
        if isinstance(model, str) and model:
            names.add(model)
        elif isinstance(model, list):
            names.update(m for m in model if isinstance(m, str))
        names.update(auth_utils.request_fallback_model_names(reading))
    return names


def gateway_reads(sent: Sent) -> tuple[str, ...] | None:
    """The gateway's facts (the model names it checks), or None when it refuses the request."""
    route, path_model = ROUTES.match(sent.path.encode())
    assert route is not None, sent.path
    try:
        reading = read(route, sent.headers, sent.query, sent.body, path_model)
    except GatewayError:
        return None
    facts = request_facts(reading.sources, reading.fields)
    return None if isinstance(facts, Deny) else facts.models


def check(sent: Sent) -> tuple[str, ...] | None:
    """The property: the gateway refuses, or it checks every model LiteLLM acts on and LiteLLM's
    reading holds no field the gateway refuses. Returns the gateway's facts."""
    ours = gateway_reads(sent)
    if ours is None:
        return None
    readings = litellm_reads(sent)
    if readings is None:
        return ours  # LiteLLM refuses it: it acts on no model
    _, path_model = ROUTES.match(sent.path.encode())
    unchecked = acted_on(sent, readings, path_model) - set(ours)
    assert not unchecked, f"LiteLLM acts on {unchecked} that the gateway did not check ({ours}): {sent}"
    for reading in readings:
        refused = {key.removesuffix("[]") for key in reading if isinstance(key, str)} & set(REFUSED_FIELDS)
        assert not refused, f"LiteLLM reads the refused {refused} that the gateway let through: {sent}"
    return ours


# -- the table ----------------------------------------------------------------------------------------------

JSON_CT = ((b"content-type", b"application/json"),)
FORM_CT = ((b"content-type", b"application/x-www-form-urlencoded"),)
MULTIPART_CT = ((b"content-type", b"multipart/form-data; boundary=XyZ"),)
EMBED_FORM_ATTACK = b'{"model": "gpt-4o-mini", "input": "x", "pad": "&model=text-embedding-3-small&input=hi&"}'
CHAT_BODY = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
LLAMA_BODY = b'{"model": "llama-3-8b", "messages": [{"role": "user", "content": "hi"}]}'
DEPLOYMENT = "/openai/deployments/gpt-4o-mini/chat/completions"


def part(name: str, value: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n".encode()


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--XyZ--\r\n"


AUDIO = part("file", "RIFF", filename="a.wav")

TABLE = [
    # issue 13's two attacks and their kin: refused
    ("form-encoded-json-on-embeddings", Sent("/v1/embeddings", FORM_CT, EMBED_FORM_ATTACK), None),
    ("form-encoded-json-on-chat", Sent("/v1/chat/completions", FORM_CT, EMBED_FORM_ATTACK), None),
    ("form-encoded-json-on-images", Sent("/v1/images/generations", FORM_CT, EMBED_FORM_ATTACK), None),
    ("multipart-on-embeddings", Sent("/v1/embeddings", MULTIPART_CT, form(part("model", "text-embedding-3-small"), part("input", "hi"))), None),
    ("protobuf-json", Sent("/v1/chat/completions", ((b"content-type", b"application/x-protobuf"),), CHAT_BODY), None),
    ("text-plain-on-deployment", Sent(DEPLOYMENT, ((b"content-type", b"text/plain"),), LLAMA_BODY), None),
    ("json-case-on-deployment", Sent(DEPLOYMENT, ((b"content-type", b"Application/Json"),), LLAMA_BODY), None),
    ("no-type-on-deployment", Sent(DEPLOYMENT, (), LLAMA_BODY), None),
    ("engines-no-type", Sent("/engines/gpt-4o-mini/embeddings", (), b'{"model": "text-embedding-3-small", "input": "x"}'), None),
    ("two-content-types", Sent("/v1/embeddings", JSON_CT + FORM_CT, EMBED_FORM_ATTACK), None),
    ("form-then-json", Sent("/v1/embeddings", FORM_CT + JSON_CT, EMBED_FORM_ATTACK), None),
    ("nel-padded-form", Sent("/v1/embeddings", ((b"content-type", b"application/x-www-form-urlencoded\x85"),), EMBED_FORM_ATTACK), None),
    ("query-model", Sent("/v1/chat/completions", JSON_CT, CHAT_BODY, b"model=llama-3-8b"), None),
    ("encoded-query-key", Sent("/v1/chat/completions", JSON_CT, CHAT_BODY, b"mod%65l=llama-3-8b"), None),
    ("comma-models", Sent("/v1/chat/completions", JSON_CT, b'{"model": "gpt-4o-mini,llama-3-8b", "messages": []}'), None),
    ("duplicate-json-model", Sent("/v1/chat/completions", JSON_CT, b'{"model": "gpt-4o-mini", "model": "llama-3-8b"}'), ("llama-3-8b",)),
    ("escaped-duplicate-key", Sent("/v1/chat/completions", JSON_CT, b'{"model": "gpt-4o-mini", "m\\u006fdel": "llama-3-8b"}'), ("llama-3-8b",)),
    ("nan-fallback-parser", Sent("/v1/chat/completions", JSON_CT, b'{"model": "gpt-4o-mini", "t": NaN}'), None),
    ("router-settings-override", Sent("/v1/chat/completions", JSON_CT,
                                      b'{"model": "gpt-4o-mini", "router_settings_override": {"fallbacks": [{"gpt-4o-mini": ["llama-3-8b"]}]}}'), None),
    ("extra-body-model", Sent("/v1/chat/completions", JSON_CT, b'{"model": "gpt-4o-mini", "extra_body": {"model": "llama-3-8b"}}'), None),
    ("aws-credentials", Sent("/v1/chat/completions", JSON_CT, b'{"model": "gpt-4o-mini", "aws_access_key_id": "A", "aws_secret_access_key": "B"}'), None),
    ("specific-deployment", Sent("/v1/chat/completions", JSON_CT, b'{"model": "openai/llama-3-8b", "specific_deployment": true}'), None),
    ("fallback-entry-api-base", Sent("/v1/chat/completions", JSON_CT,
                                     b'{"model": "gpt-4o-mini", "fallbacks": [{"model": "gpt-4o-mini", "api_base": "http://x"}]}'), None),
    ("form-model-list", Sent("/v1/audio/transcriptions", MULTIPART_CT, form(part("model[]", "whisper"), AUDIO)), None),
    ("form-conflict", Sent("/v1/audio/transcriptions", MULTIPART_CT, form(part("model", "a"), part("model", "b"), AUDIO)), None),
    ("form-api-key", Sent("/v1/audio/transcriptions", MULTIPART_CT, form(part("model", "w"), part("api_key", "sk-x"), AUDIO)), None),
    ("urlencoded-transcription", Sent("/v1/audio/transcriptions", FORM_CT, b"model=w"), None),
    # served, and every model LiteLLM acts on is checked
    ("json", Sent("/v1/chat/completions", JSON_CT, CHAT_BODY), ("gpt-4o-mini",)),
    ("json-charset", Sent("/v1/chat/completions", ((b"content-type", b"Application/Json; charset=utf-8"),), CHAT_BODY), ("gpt-4o-mini",)),
    ("no-content-type", Sent("/v1/chat/completions", (), CHAT_BODY), ("gpt-4o-mini",)),
    ("json-with-form-text", Sent("/v1/embeddings", JSON_CT, EMBED_FORM_ATTACK), ("gpt-4o-mini",)),
    ("agreeing-query", Sent("/v1/chat/completions", JSON_CT, CHAT_BODY, b"model=gpt-4o-mini"), ("gpt-4o-mini",)),
    ("deployment-agreeing-body", Sent(DEPLOYMENT, JSON_CT, CHAT_BODY), ("gpt-4o-mini",)),
    ("deployment-no-model", Sent(DEPLOYMENT, (), b'{"messages": []}'), ("gpt-4o-mini",)),
    ("deployment-empty", Sent(DEPLOYMENT, (), b""), ("gpt-4o-mini",)),
    ("fallbacks", Sent("/v1/chat/completions", JSON_CT,
                       b'{"model": "gpt-4o-mini", "fallbacks": ["llama-3-8b", {"model": "gpt-4o", "fallbacks": ["o1"]}]}'),
     ("gpt-4o-mini", "llama-3-8b", "gpt-4o", "o1")),
    ("router-fallbacks", Sent("/v1/chat/completions", JSON_CT,
                              b'{"model": "gpt-4o-mini", "context_window_fallbacks": [{"gpt-4o-mini": ["llama-3-8b"]}]}'),
     ("gpt-4o-mini", "llama-3-8b")),
    ("transcription", Sent("/v1/audio/transcriptions", MULTIPART_CT, form(part("model", "whisper-1"), AUDIO)), ("whisper-1",)),
    ("transcription-list-fallbacks", Sent("/v1/audio/transcriptions", MULTIPART_CT,
                                          form(part("model", "whisper-1"), part("fallbacks[]", "whisper-2"), AUDIO)),
     ("whisper-1", "whisper-2")),
]


@pytest.mark.parametrize(("sent", "expected"), [case[1:] for case in TABLE], ids=[case[0] for case in TABLE])
def test_table(sent: Sent, expected: tuple[str, ...] | None) -> None:
    assert check(sent) == expected


# -- the generated corpus ---------------------------------------------------------------------------------


def _case_variants(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(text, upper))
    )


MEDIA_TYPES = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain",
               "application/x-protobuf", "application/protobuf", "", "application/json-seq"]
# Padding: LiteLLM strips with str.strip() (Unicode whitespace: NBSP, NEL, \x0b, \x1c ...), Starlette " \t".
PAD = st.sampled_from([""] * 60 + [" ", "\t", "  ", "\xa0", "\x85", "\x0b", "\x1c"])
PARAMS = st.sampled_from(["", "; charset=utf-8", ";charset=UTF-16", "; boundary=XyZ", '; boundary="XyZ"',
                          "; charset=utf-8; boundary=XyZ", ";", '; x="a;b"; boundary=XyZ'])


@st.composite
def content_type_headers(draw, usual: str) -> tuple[tuple[bytes, bytes], ...]:
    """Content-Type headers, half of them of the route's usual media type."""
    headers = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 1, 1, 2]))):
        media = draw(st.sampled_from([usual] * len(MEDIA_TYPES) + MEDIA_TYPES).flatmap(_case_variants))
        value = draw(PAD) + media + draw(PAD) + draw(PARAMS)
        headers.append((b"content-type", value.encode("latin-1")))
    if draw(st.integers(0, 9)) == 0:
        headers.append((b"content-encoding", draw(st.sampled_from([b"identity", b"gzip", b""]))))
    return tuple(headers)


NAMES = st.sampled_from(MODELS)


@st.composite
def fallbacks(draw, depth: int = 0) -> Any:
    entries = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.integers(0, 3 if depth < 2 else 2))
        if kind == 0:
            entries.append(draw(NAMES))
        elif kind == 1:
            entries.append({"model": draw(NAMES)})
        elif kind == 2:
            entries.append({draw(NAMES): draw(st.lists(NAMES, max_size=2))})
        else:
            entries.append({"model": draw(NAMES), draw(st.sampled_from(FALLBACK_FIELDS)): draw(fallbacks(depth + 1))})
    return entries


@st.composite
def json_bodies(draw) -> bytes:
    """JSON objects as text, so that keys can repeat and strings can hold a form."""
    members = []
    if draw(st.booleans()):
        members.append(("model", orjson.dumps(draw(NAMES)).decode()))
    for _ in range(draw(st.integers(0, 2))):  # duplicates, plain or escaped
        key = draw(st.sampled_from(["model", "m\\u006fdel", "Model", "model "]))
        members.append((key, orjson.dumps(draw(NAMES)).decode()))
    if draw(st.booleans()):
        field = draw(st.sampled_from(FALLBACK_FIELDS))
        members.append((field, orjson.dumps(draw(fallbacks())).decode()))
    if draw(st.integers(0, 5)) == 0:
        members.append((draw(st.sampled_from(["api_base", "user_config", "extra_body", "api_key", "specific_deployment"])),
                        draw(st.sampled_from(['"x"', '{"model": "llama-3-8b"}', "null", "true"]))))
    if draw(st.booleans()):  # a body that is also a form: `...&model=X&input=hi&...`
        members.append(("pad", orjson.dumps(f"&model={draw(NAMES)}&input=hi&").decode()))
    draw(st.randoms()).shuffle(members)
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in members) + "}").encode()


@st.composite
def form_bodies(draw) -> bytes:
    """urlencoded forms, some whose keys look like JSON."""
    pairs = [(draw(st.sampled_from(["model", "model[]", "fallbacks[]", "input", '{"model":"x","a":"', "api_key"])),
              draw(NAMES)) for _ in range(draw(st.integers(0, 4)))]
    return "&".join(f"{k}={v}" for k, v in pairs).encode()


@st.composite
def multipart_bodies(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["model", "model[]", "fallbacks[]", "fallbacks", "language", "api_base", "file"]))
        disposition = draw(st.sampled_from([
            f'form-data; name="{name}"', f"form-data; name={name}", f'form-data; name="{name}"; filename="a.wav"',
            f'form-data; name = "{name}"', f'form-data; NAME="{name}"', f'form-data; name="{name}"; x="; filename=y"',
            f"form-data; name*=utf-8''{name}",
        ]))
        parts.append(f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n{draw(NAMES)}\r\n".encode())
    return b"".join(parts) + (b"--XyZ--\r\n" if draw(st.integers(0, 9)) else b"")


PATHS = st.sampled_from([
    "/v1/chat/completions", "/v1/embeddings", "/v1/images/generations", "/v1/moderations", "/v1/audio/transcriptions",
    "/openai/deployments/gpt-4o-mini/chat/completions", "/engines/llama-3-8b/embeddings",
])
QUERIES = st.sampled_from([b""] * 6 + [b"model=gpt-4o-mini", b"model=llama-3-8b", b"model=gpt-4o-mini&model=llama-3-8b",
                                      b"mod%65l=llama-3-8b", b"api-version=2024-02-01", b"model="])


@st.composite
def requests(draw) -> Sent:
    """A request to a route, its body of the route's usual kind half the time."""
    path = draw(PATHS)
    multipart = path == "/v1/audio/transcriptions"
    usual = multipart_bodies() if multipart else json_bodies()
    body = draw(st.one_of(usual, usual, usual, json_bodies(), form_bodies(), multipart_bodies(), st.just(b"")))
    headers = draw(content_type_headers("multipart/form-data" if multipart else "application/json"))
    return Sent(path, headers, body, draw(QUERIES))


@settings(max_examples=400, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests())
def test_generated_requests(sent: Sent) -> None:
    check(sent)


def test_the_generated_corpus_is_not_all_refused() -> None:
    """The property holds trivially for a gateway that refuses everything: count what it serves."""
    served = refused = 0

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests())
    def tally(sent: Sent) -> None:
        nonlocal served, refused
        if gateway_reads(sent) is None:
            refused += 1
        else:
            served += 1

    tally()
    assert served >= 20 and refused >= 20, (served, refused)


# -- the gateway's lists of LiteLLM's names ---------------------------------------------------------------


def litellm_client_fields() -> Iterator[str]:
    yield from clientside_credential_keys
    yield from (f for f in CredentialLiteLLMParams.model_fields if f != "api_version")
    yield from ("user_config", "model_list")


def test_refused_fields_cover_litellms_credentials_and_deployment_fields() -> None:
    """Every field LiteLLM takes a client's credentials, endpoint or deployment list from
    (api_version, which picks an Azure API version, excepted) is refused."""
    assert set(litellm_client_fields()) - set(REFUSED_FIELDS) == set()


def test_fallback_fields_are_litellms() -> None:
    assert FALLBACK_FIELDS == auth_utils._FALLBACK_FIELDS


def test_every_header_litellm_takes_a_key_from_is_dropped() -> None:
    assert SpecialHeaders.litellm_credential_header_names() - {h.decode() for h in CREDENTIAL_HEADERS} == set()


def test_the_attribution_headers_are_litellms() -> None:
    assert {h.decode() for h in ATTRIBUTION_HEADERS} == {h.lower() for h in STANDARD_CUSTOMER_ID_HEADERS}
