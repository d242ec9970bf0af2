"""gateway/serving/reader.py: one reading of every request, the way LiteLLM will read it.

Per route family and Content-Type the reader either reads the body as LiteLLM will or
refuses (415, 400); the multipart and query readers must see the `model` that Starlette
(and so LiteLLM) sees. tests/unit/test_reader_differential.py checks the same against
LiteLLM's own reader; this file pins each rule and each message.
"""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers, QueryParams, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import GatewayError, InvalidRequestError, UnsupportedMediaTypeError
from gateway.serving.reader import FormFile, Reading, form_fields, json_object, media_type, query_model, read
from gateway.config import RouteConfig
from gateway.serving.routes import RouteTable

pytestmark = pytest.mark.unit

ROUTES = RouteTable()
CHAT, _ = ROUTES.match(b"/v1/chat/completions")
TRANSCRIPTIONS, _ = ROUTES.match(b"/v1/audio/transcriptions")
DEPLOYMENT, _ = ROUTES.match(b"/openai/deployments/gpt-4o/chat/completions")


def raises(fn, *args, error: type[GatewayError] = InvalidRequestError) -> GatewayError:
    with pytest.raises(error) as info:
        fn(*args)
    return info.value


def ct(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", value)]


BODY = b'{"model": "gpt-4o", "messages": []}'
SEND_JSON = "send the body as JSON with 'Content-Type: application/json'"
SEND_FORM = "send the body as multipart/form-data (with its boundary) in 'Content-Type'"

# -- the content-type table, JSON routes ---------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        ct(b"application/json"),
        ct(b"Application/Json"),
        ct(b"APPLICATION/JSON; charset=utf-8"),
        ct(b"application/json;charset=UTF-8"),
        ct(b" application/json \t; x=1"),
        ct(b"application/json; charset=utf-16"),  # LiteLLM reads the bytes as UTF-8 whatever the charset
        [],  # no Content-Type: LiteLLM reads JSON
        ct(b""),
        ct(b"  "),
        ct(b"; charset=utf-8"),
        [(b"content-type", b"application/json"), (b"content-encoding", b"identity")],
        [(b"content-type", b"application/json"), (b"content-encoding", b" Identity ")],
    ],
    ids=["exact", "case", "upper-charset", "no-space", "spaces-tab", "utf16", "none", "empty", "blank",
         "params-only", "identity", "identity-case"],
)
def test_json_routes_read_json(headers) -> None:
    reading = read(CHAT, headers, b"", BODY)
    assert reading == Reading({"body": "gpt-4o"}, {"model": "gpt-4o", "messages": []}, json=True)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (ct(b"application/x-www-form-urlencoded"),
         f"{SEND_JSON}, not application/x-www-form-urlencoded (curl -d without -H 'Content-Type: application/json' sends that)"),
        (ct(b"Application/X-WWW-Form-Urlencoded; charset=utf-8"),
         f"{SEND_JSON}, not application/x-www-form-urlencoded (curl -d without -H 'Content-Type: application/json' sends that)"),
        (ct(b"multipart/form-data; boundary=x"), f"{SEND_JSON}, not multipart/form-data"),
        (ct(b"application/x-protobuf"), f"{SEND_JSON}, not application/x-protobuf"),
        (ct(b"application/protobuf"), f"{SEND_JSON}, not application/protobuf"),
        (ct(b"text/plain"), f"{SEND_JSON}, not text/plain"),
        (ct(b"application/json-patch+json"), f"{SEND_JSON}, not application/json-patch+json"),
        (ct(b"application/jsonx"), f"{SEND_JSON}, not application/jsonx"),
        (ct(b"application/json\x0b"), "the Content-Type header must be printable ASCII"),
        (ct(b"application/json\xa0"), "the Content-Type header must be printable ASCII"),
        (ct(b"\x85application/x-www-form-urlencoded"), "the Content-Type header must be printable ASCII"),
        (ct(b'application/json"; x'), f"{SEND_JSON}, not application/json\""),
        ([(b"content-type", b"application/json"), (b"content-type", b"application/x-www-form-urlencoded")],
         "more than one Content-Type header"),
        ([(b"content-type", b"application/json"), (b"content-type", b"application/json")], "more than one Content-Type header"),
        ([(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
         "send the body uncompressed, without Content-Encoding"),
        ([(b"content-encoding", b"")], "send the body uncompressed, without Content-Encoding"),
    ],
    ids=["form", "form-case-params", "multipart", "x-protobuf", "protobuf", "text-plain", "json-patch", "jsonx",
         "vertical-tab", "nbsp", "nel-form", "quote", "json-and-form", "json-twice", "gzip", "empty-encoding"],
)
def test_json_routes_refuse_other_types(headers, detail: str) -> None:
    error = raises(read, CHAT, headers, b"", BODY, error=UnsupportedMediaTypeError)
    assert (error.status, error.code, error.detail) == (415, "UNSUPPORTED_MEDIA_TYPE", detail)
    assert error.payload()["error"]["message"] == f"This route does not read a body sent this way. ({detail})"


def test_a_json_route_needs_a_body() -> None:
    error = raises(read, CHAT, [], b"", b"")
    assert error.detail == "the request body is empty; send a JSON object"


# -- path-model routes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (ct(b"application/json"), b'{"model": "llama-3-8b"}', Reading({"path": "gpt-4o", "body": "llama-3-8b"}, {"model": "llama-3-8b"}, json=True)),
        ([], b'{"model": "llama-3-8b"}', Reading({"path": "gpt-4o", "body": "llama-3-8b"}, {"model": "llama-3-8b"}, json=True)),
        (ct(b"Application/Json"), b'{"messages": []}', Reading({"path": "gpt-4o", "body": None}, {"messages": []}, json=True)),
        # an empty body: nothing to read, whatever the type says; LiteLLM reads nothing either
        (ct(b"text/plain"), b"", Reading({"path": "gpt-4o"})),
        ([], b"", Reading({"path": "gpt-4o"})),
    ],
    ids=["json", "no-type", "case-no-model", "empty-text", "empty"],
)
def test_path_routes_always_read_a_body(headers, body: bytes, expected: Reading) -> None:
    """The path names the model, and a body LiteLLM reads may name another (issue 13: the gateway
    used to read the body only under an exact `application/json`)."""
    assert read(DEPLOYMENT, headers, b"", body, "gpt-4o") == expected


@pytest.mark.parametrize("value", [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x"])
def test_path_routes_refuse_other_types(value: bytes) -> None:
    error = raises(read, DEPLOYMENT, ct(value), b"", b'{"model": "llama-3-8b"}', "gpt-4o", error=UnsupportedMediaTypeError)
    assert error.status == 415 and error.detail.startswith(SEND_JSON)


def test_path_routes_refuse_a_body_that_is_not_json() -> None:
    error = raises(read, DEPLOYMENT, [], b"", b"model=llama-3-8b", "gpt-4o")
    assert error.detail.startswith("the body is not valid JSON: ")


# -- the multipart route -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[], ct(b""), ct(b"application/json"), ct(b"application/x-www-form-urlencoded"), ct(b"multipart/mixed; boundary=XyZ"),
     ct(b"multipart/form-data\xa0; boundary=XyZ")],
    ids=["none", "empty", "json", "urlencoded", "mixed", "nbsp"],
)
def test_the_multipart_route_reads_multipart_only(headers) -> None:
    """LiteLLM's transcription handler reads a file from the form only (FastAPI's File(...)); any
    other body is no request it serves as the gateway read it. Was 400 INVALID_REQUEST ("this
    route takes multipart/form-data"): the body is fine, its media type is not, so 415."""
    body = b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nw\r\n--XyZ--\r\n'
    error = raises(read, TRANSCRIPTIONS, headers, b"", body, error=UnsupportedMediaTypeError)
    assert error.status == 415
    assert error.detail in (SEND_FORM, "the Content-Type header must be printable ASCII")


def test_the_multipart_route_reads_the_form() -> None:
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n--XyZ--\r\n')
    reading = read(TRANSCRIPTIONS, ct(b"Multipart/Form-Data; boundary=XyZ"), b"", body)
    assert reading.sources == {"body": "whisper-1"} and not reading.json
    assert reading.fields["model"] == "whisper-1" and isinstance(reading.fields["file"], FormFile)
    assert reading.fields["file"].filename == "a.wav"


def test_config_routes_read_as_their_model_source_says() -> None:
    """`routes:` entries: `body` is the JSON family, `multipart` the form's, `none` is not read."""
    table = RouteTable([RouteConfig("/v1/custom", "none"), RouteConfig("/v1/translations", "multipart"),
                        RouteConfig("/v1/other", "body")])
    none, _ = table.match(b"/v1/custom")
    assert read(none, ct(b"text/plain"), b"", b"anything") == Reading({})
    assert read(none, ct(b"text/plain"), b"model=m", b"anything") == Reading({"query": "m"})
    form, _ = table.match(b"/v1/translations")
    assert raises(read, form, ct(b"application/json"), b"", BODY, error=UnsupportedMediaTypeError).status == 415
    other, _ = table.match(b"/v1/other")
    assert raises(read, other, ct(b"text/plain"), b"", BODY, error=UnsupportedMediaTypeError).status == 415
    assert read(other, [], b"", BODY).sources == {"body": "gpt-4o"}


def test_media_type_is_litellms_normalisation() -> None:
    assert media_type(b" Multipart/Form-Data ; boundary=x") == b"multipart/form-data"
    assert media_type(b"") == b""
    assert raises(media_type, b"a\x00", error=UnsupportedMediaTypeError).status == 415


# -- the query string ------------------------------------------------------------------------------


def test_the_query_model_is_a_source_on_every_route() -> None:
    assert read(CHAT, [], b"model=gpt-4o&x=1", BODY).sources == {"body": "gpt-4o", "query": "gpt-4o"}
    assert read(DEPLOYMENT, [], b"model=o1", b"", "gpt-4o").sources == {"path": "gpt-4o", "query": "o1"}


# -- json_object ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model": "gpt-4o"}', {"model": "gpt-4o"}),
        (b'  {"model": "gpt-4o", "messages": []}\n', {"model": "gpt-4o", "messages": []}),
        (b"{}", {}),
        (b'{"model": "a", "model": "b"}', {"model": "b"}),  # the last duplicate, as json.loads and LiteLLM
        ('{"model": "caf\u00e9"}'.encode(), {"model": "caf\u00e9"}),
    ],
    ids=["simple", "whitespace", "empty-object", "duplicate-key", "utf8"],
)
def test_json_object(body: bytes, expected: dict) -> None:
    assert json_object(body) == expected


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "the request body is empty; send a JSON object"),
        (b"[]", "the body must be a JSON object"),
        (b'"model"', "the body must be a JSON object"),
        (b"null", "the body must be a JSON object"),
        (b"42", "the body must be a JSON object"),
        (b'[{"model": "x"}]', "the body must be a JSON object"),
    ],
    ids=["empty", "list", "string", "null", "number", "list-of-objects"],
)
def test_json_object_rejections(body: bytes, detail: str) -> None:
    error = raises(json_object, body)
    assert (error.status, error.code, error.detail, error.param) == (400, "INVALID_REQUEST", detail, None)


@pytest.mark.parametrize(
    "body",
    [b"{", b"{'model': 'x'}", b'{"model": }', b"\xff\xfe", b'{"a": 1} x', b"model=x", b'{"a": NaN}',
     b'{"a": Infinity}', b'{"model": "\\ud800"}', b'\xef\xbb\xbf{"model": "x"}'],
    ids=["open", "single-quotes", "no-value", "bytes", "trailing", "form", "nan", "infinity", "lone-surrogate", "bom"],
)
def test_json_object_not_json(body: bytes) -> None:
    """orjson's refusals are the gateway's: LiteLLM's forgiving fallback (NaN, Infinity) never gets a body."""
    error = raises(json_object, body)
    assert error.code == "INVALID_REQUEST"
    assert error.detail.startswith("the body is not valid JSON: ")
    assert " at position " in error.detail


QUERY_CASES = [
    (b"", None),
    (b"api-version=2024-02-01", None),
    (b"model=gpt-4o", "gpt-4o"),
    (b"a=1&model=gpt-4o&b=2", "gpt-4o"),
    (b"model=gpt-4o&model=gpt-4o", "gpt-4o"),
    (b"model=openai%2Fgpt-4o", "openai/gpt-4o"),
    (b"model=a+b", "a b"),
    (b"model=", ""),
    (b"model", ""),
    (b"xmodel=a", None),
    (b"modelx=a", None),
    (b"MODEL=a", None),  # keys are case-sensitive, as in Starlette
    (b"models=a", None),
    (b"a=model", None),
    (b"model=caf%C3%A9", "caf\u00e9"),
    # percent-encoded key: Starlette decodes it to `model`
    (b"mod%65l=gpt-4o", "gpt-4o"),
    (b"%6d%6f%64%65%6c=gpt-4o", "gpt-4o"),
    (b"model=a&mod%65l=a", "a"),
]


@pytest.mark.parametrize(("query", "expected"), QUERY_CASES, ids=lambda v: repr(v)[2:-1] if isinstance(v, bytes) else None)
def test_query_model(query: bytes, expected) -> None:
    assert query_model(query) == expected


@pytest.mark.parametrize(("query", "expected"), QUERY_CASES, ids=lambda v: repr(v)[2:-1] if isinstance(v, bytes) else None)
def test_query_model_agrees_with_starlette(query: bytes, expected) -> None:
    assert query_model(query) == QueryParams(query).get("model")


@pytest.mark.parametrize(
    "query",
    [b"model=a&model=b", b"model=a&x=1&model=", b"model=a&mod%65l=b", b"model=a&model=a%20"],
    ids=["two", "blank-second", "encoded-key", "trailing-space"],
)
def test_query_model_conflicts(query: bytes) -> None:
    error = raises(query_model, query)
    assert (error.code, error.detail, error.param) == ("INVALID_REQUEST", "conflicting `model` values in the query string", "model")


# -- multipart_model -----------------------------------------------------------------------------
# -- form_fields: the multipart route ----------------------------------------------------------------

CT = "multipart/form-data; boundary=XyZ"


class Refused:
    """The gateway refuses the form; `why` says what Starlette (and so LiteLLM) reads instead."""

    def __init__(self, detail: str, why: str) -> None:
        self.detail, self.why = detail, why

    def __repr__(self) -> str:
        return f"Refused({self.why})"


MALFORMED = Refused("malformed multipart body: Invalid multipart data.", "malformed")
FILE = Refused("`model` must be one form field, not a list or a file", "file")
LIST = Refused("`model` must be one form field, not a list or a file", "list")
CONFLICT = Refused("conflicting `model` fields in the form", "conflict")


def part(name: str, value: str | bytes, *, filename: str | None = None, disposition: str | bytes | None = None,
         boundary: str = "XyZ") -> bytes:
    if disposition is None:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    if isinstance(disposition, str):
        disposition = disposition.encode()
    data = value.encode() if isinstance(value, str) else value
    return f"--{boundary}\r\nContent-Disposition: ".encode() + disposition + b"\r\n\r\n" + data + b"\r\n"


def form(*parts: bytes, boundary: str = "XyZ") -> bytes:
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


AUDIO = part("file", b"RIFF\x00\x00fake-wav\r\n--Xy\r\n", filename="a.wav")
UTF16 = "multipart/form-data; charset=utf-16; boundary=XyZ"

MULTIPART_CASES = [
    ("one-field", CT, form(part("model", "whisper-1"), AUDIO), "whisper-1"),
    ("after-file", CT, form(AUDIO, part("model", "whisper-1")), "whisper-1"),
    ("no-model", CT, form(AUDIO, part("language", "en")), None),
    ("empty-form", CT, form(), None),
    ("repeat-same", CT, form(part("model", "w"), part("model", "w")), "w"),
    ("empty-value", CT, form(part("model", "")), ""),
    ("slash-name", CT, form(part("model", "openai/whisper-1")), "openai/whisper-1"),
    ("utf8", CT, form(part("model", "caf\u00e9")), "caf\u00e9"),
    # a file part named `model` is refused: it is no model name, and LiteLLM would see an upload
    ("file-part-named-model", CT, form(part("model", b"audio", filename="model.wav"), part("model", "w")), FILE),
    ("only-file-named-model", CT, form(part("model", b"audio", filename="m.wav")), FILE),
    ("empty-filename", CT, form(part("model", "x", filename="")), FILE),
    ("quoted-boundary", 'multipart/form-data; boundary="XyZ"', form(part("model", "w")), "w"),
    ("boundary-case", "Multipart/Form-Data; Boundary=XyZ", form(part("model", "w")), "w"),
    ("charset-first", "multipart/form-data; charset=utf-8; boundary=XyZ", form(part("model", "w")), "w"),
    # python-multipart (and so Starlette and LiteLLM) refuses a preamble: so does the gateway
    ("preamble", CT, b"preamble text\r\n" + form(part("model", "w")), MALFORMED),
    ("epilogue", CT, form(part("model", "w")) + b"epilogue --XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nz\r\n", "w"),
    ("header-case", CT, form(part("", "w", disposition='form-data; NAME="model"')), "w"),
    ("unquoted-name", CT, form(part("", "w", disposition="form-data; name=model")), "w"),
    ("other-name", CT, form(part("", "w", disposition='form-data; name="model_name"')), None),
    ("name-uppercase", CT, form(part("", "w", disposition='form-data; name="MODEL"')), None),
    ("extra-part-header", CT, form(b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\nContent-Type: text/plain\r\n\r\nw\r\n'), "w"),
    # valid forms whose data holds the boundary text away from a line start (RFC 2046 allows it)
    ("file-holds-delimiter-midline", CT, form(part("file", b"RIFF--XyZ\x00", filename="a.wav"), part("model", "w")), "w"),
    ("field-holds-delimiter-midline", CT, form(part("prompt", "say --XyZ"), part("model", "w")), "w"),
    # read differently by naive splitting and by a real multipart parser: Starlette's reading is the gateway's
    ("boundary-twice", "multipart/form-data; boundary=XyZ; boundary=AbC",
     form(part("model", "other", boundary="AbC"), boundary="AbC") + form(part("model", "allowed")), "other"),
    ("spaces-around-equals", CT, form(part("model", "allowed"), part("", "other", disposition='form-data; name = "model"')), CONFLICT),
    ("quoted-semicolon", CT, form(part("model", "allowed"), part("", "other", disposition='form-data; name="model"; x="; filename=y"')), CONFLICT),
    ("delimiter-inside-value", CT, form(part("model", "allowed"), part("prompt", "see --XyZ-- here"), part("model", "other")), CONFLICT),
    ("conflict", CT, form(part("model", "a"), part("model", "b")), CONFLICT),
    ("conflict-space", CT, form(part("model", "a"), AUDIO, part("model", "a ")), CONFLICT),
    # the form's charset decodes the field names too: a `model` written in UTF-16 is `model`
    # (the gateway before issue 13 compared raw bytes, and missed it)
    ("utf16-name", UTF16, form(part("", "gpt-4o".encode("utf-16-le"), disposition=b'form-data; name="' + "model".encode("utf-16-le") + b'"')), "gpt-4o"),
    ("unknown-charset", "multipart/form-data; charset=nope; boundary=XyZ", form(part("model", "caf\u00e9")), "caf\u00c3\u00a9"),
    ("model-list", CT, form(part("model[]", "a"), part("model[]", "b")), LIST),
    ("bare-lf", CT, b'--XyZ\nContent-Disposition: form-data; name="model"\n\nw\n--XyZ--\n', MALFORMED),
    ("no-blank-line", CT, b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\nw\r\n--XyZ--\r\n', MALFORMED),
]


@pytest.mark.parametrize(("content_type", "body", "expected"), [c[1:] for c in MULTIPART_CASES], ids=[c[0] for c in MULTIPART_CASES])
def test_form_fields_model(content_type: str, body: bytes, expected) -> None:
    if isinstance(expected, Refused):
        error = raises(form_fields, content_type, body)
        assert (error.status, error.code, error.detail) == (400, "INVALID_REQUEST", expected.detail)
    else:
        assert form_fields(content_type, body).get("model") == expected


async def starlette_items(content_type: str, body: bytes) -> list[tuple[str, object]] | MultiPartException:
    """What LiteLLM's `request.form()` gives: every (name, value) of the form, or Starlette's refusal."""

    async def stream():
        yield body

    try:
        formdata = await MultiPartParser(Headers({"content-type": content_type}), stream()).parse()
    except MultiPartException as exc:
        return exc
    items = list(formdata.multi_items())
    await formdata.close()
    return items


@pytest.mark.parametrize(("content_type", "body", "expected"), [c[1:] for c in MULTIPART_CASES], ids=[c[0] for c in MULTIPART_CASES])
async def test_form_fields_agree_with_starlette(content_type: str, body: bytes, expected) -> None:
    """Every case says what Starlette (LiteLLM's parser) reads: the gateway's `model`, or, where the
    gateway refuses, the reason it has to (Starlette refuses too, `model` is a file or a list, or
    its `model` fields disagree, so the gateway cannot know which one a reader takes)."""
    theirs = await starlette_items(content_type, body)
    if expected is MALFORMED:
        assert isinstance(theirs, MultiPartException)
        return
    assert not isinstance(theirs, MultiPartException), theirs.message
    models = [value for name, value in theirs if name == "model"]
    if expected is FILE:
        assert any(isinstance(value, UploadFile) for value in models)
    elif expected is LIST:
        assert [name for name, _ in theirs if name == "model[]"]
    elif expected is CONFLICT:
        assert len(set(models)) > 1
    else:  # LiteLLM's handler takes the last `model` (get_form_data); they all agree here anyway
        assert models[-1:] == ([] if expected is None else [expected])
        assert len(set(models)) <= 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (form(part("model", "w"), part("language", "en"), part("language", "fr")), {"model": "w", "language": "fr"}),
        (form(part("model", "w"), part("fallbacks[]", "a"), part("fallbacks[]", "b")), {"model": "w", "fallbacks": ["a", "b"]}),
        (form(part("model", "w"), part("timestamp_granularities[]", "word")), {"model": "w", "timestamp_granularities": ["word"]}),
    ],
    ids=["last-repeat-wins", "list-field", "openai-sdk-list"],
)
def test_form_fields_are_what_litellms_handler_gets(body: bytes, fields: dict) -> None:
    """LiteLLM's get_form_data: the last value of a repeated name; `name[]` parts as a list."""
    assert form_fields(CT, body) == fields


@pytest.mark.parametrize(
    "parts",
    [(part("fallbacks", "a"), part("fallbacks[]", "b")), (part("fallbacks[]", "b"), part("fallbacks", "a"))],
    ids=["plain-first", "list-first"],
)
def test_a_name_sent_both_plain_and_as_a_list_is_refused(parts) -> None:
    """LiteLLM's handler fails on the first order (a str has no append) and keeps the string on the other."""
    error = raises(form_fields, CT, form(part("model", "w"), *parts))
    assert error.detail == "the form sends `fallbacks` both as `fallbacks` and as `fallbacks[]`"


@pytest.mark.parametrize(
    ("content_type", "detail"),
    [
        ("multipart/form-data", "malformed multipart body: Missing boundary in multipart."),
        ("multipart/form-data; charset=utf-8", "malformed multipart body: Missing boundary in multipart."),
    ],
    ids=["no-boundary", "charset-only"],
)
def test_form_without_a_boundary(content_type: str, detail: str) -> None:
    error = raises(form_fields, content_type, form(part("model", "w")))
    assert (error.status, error.detail) == (400, detail)


def test_form_limits_are_starlettes() -> None:
    """A field over Starlette's 1 MB part limit is refused as LiteLLM's request.form() refuses it."""
    error = raises(form_fields, CT, form(part("prompt", "x" * (1024 * 1024 + 1)), part("model", "w")))
    assert error.detail == "malformed multipart body: Part exceeded maximum size of 1024KB."


def test_file_contents_are_not_kept() -> None:
    fields = form_fields(CT, form(part("model", "w"), part("file", b"\x00" * 3_000_000, filename="big.wav")))
    assert repr(fields["file"]) == "FormFile('big.wav')"
