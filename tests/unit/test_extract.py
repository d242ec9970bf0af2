"""gateway/extract.py: where a request names its model (JSON body, query string, multipart form).

The multipart and query parsers must see the same `model` that LiteLLM (Starlette's
`request.form()` / `request.query_params`) will see, or refuse the request: any
difference lets a client show the gateway one model and LiteLLM another.
"""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers, QueryParams, UploadFile
from starlette.formparsers import MultiPartParser

from gateway.errors import InvalidRequestError
from gateway.extract import json_object, multipart_model, query_model

pytestmark = pytest.mark.unit


def raises(fn, *args) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        fn(*args)
    return info.value


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


@pytest.mark.parametrize("body", [b"{", b"{'model': 'x'}", b'{"model": }', b"\xff\xfe", b'{"a": 1} x', b"model=x"])
def test_json_object_not_json(body: bytes) -> None:
    error = raises(json_object, body)
    assert error.code == "INVALID_REQUEST"
    assert error.detail.startswith("the body is not valid JSON: ")
    assert " at position " in error.detail


# -- query_model ---------------------------------------------------------------------------

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

CT = "multipart/form-data; boundary=XyZ"
REFUSED = "refused with INVALID_REQUEST"
MALFORMED = "refused as malformed"


def part(name: str, value: str | bytes, *, filename: str | None = None, disposition: str | None = None, boundary: str = "XyZ") -> bytes:
    if disposition is None:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    data = value.encode() if isinstance(value, str) else value
    return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


def form(*parts: bytes, boundary: str = "XyZ") -> bytes:
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


AUDIO = part("file", b"RIFF\x00\x00fake-wav\r\n--Xy\r\n", filename="a.wav")

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
    ("file-part-named-model", CT, form(part("model", b"audio", filename="model.wav"), part("model", "w")), REFUSED),
    ("only-file-named-model", CT, form(part("model", b"audio", filename="m.wav")), REFUSED),
    ("empty-filename", CT, form(part("model", "x", filename="")), REFUSED),
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
    # the parts below are read differently by naive splitting and by a real multipart parser
    ("boundary-twice", "multipart/form-data; boundary=XyZ; boundary=AbC",
     form(part("model", "other", boundary="AbC"), boundary="AbC") + form(part("model", "allowed")), None),
    ("spaces-around-equals", CT, form(part("model", "allowed"), part("", "other", disposition='form-data; name = "model"')), None),
    ("quoted-semicolon", CT, form(part("model", "allowed"), part("", "other", disposition='form-data; name="model"; x="; filename=y"')), None),
    ("delimiter-inside-value", CT, form(part("model", "allowed"), part("prompt", "see --XyZ-- here"), part("model", "other")), None),
]


@pytest.mark.parametrize(("content_type", "body", "expected"), [c[1:] for c in MULTIPART_CASES[:23]], ids=[c[0] for c in MULTIPART_CASES[:23]])
def test_multipart_model(content_type: str, body: bytes, expected) -> None:
    if expected in (REFUSED, MALFORMED):
        error = raises(multipart_model, content_type, body)
        detail = "`model` must be a form field, not a file" if expected == REFUSED else "malformed multipart body"
        assert (error.code, error.detail) == ("INVALID_REQUEST", detail)
    else:
        assert multipart_model(content_type, body) == expected


async def starlette_model(content_type: str, body: bytes) -> object:
    """What LiteLLM sees: `(await request.form()).get("model")` (the last value wins)."""

    async def stream():
        yield body

    parser = MultiPartParser(Headers({"content-type": content_type}), stream())
    formdata = await parser.parse()
    value = formdata.get("model")
    await formdata.close()
    return value


@pytest.mark.parametrize(("content_type", "body", "_"), [c[1:] for c in MULTIPART_CASES], ids=[c[0] for c in MULTIPART_CASES])
async def test_multipart_model_agrees_with_starlette(content_type: str, body: bytes, _) -> None:
    """The gateway either refuses the form or reads the `model` LiteLLM will read."""
    try:
        theirs = await starlette_model(content_type, body)
    except Exception:  # Starlette refuses the form: LiteLLM never reads a model from it
        return
    try:
        ours = multipart_model(content_type, body)
    except InvalidRequestError:
        return
    if isinstance(theirs, UploadFile):
        assert ours is None  # a file is no model name; LiteLLM cannot use it as one either
    else:
        assert ours == theirs


@pytest.mark.parametrize(
    ("content_type", "body", "detail", "param"),
    [
        ("application/json", b'{"model": "w"}', "this route takes multipart/form-data", None),
        ("application/x-www-form-urlencoded", b"model=w", "this route takes multipart/form-data", None),
        ("", form(part("model", "w")), "this route takes multipart/form-data", None),
        ("multipart/form-data", form(part("model", "w")), "multipart request without a boundary in Content-Type", None),
        ("multipart/form-data; boundary=", form(part("model", "w")), "multipart request without a boundary in Content-Type", None),
        ("multipart/form-data; charset=utf-8", form(part("model", "w")), "multipart request without a boundary in Content-Type", None),
        (CT, form(part("model", "a"), part("model", "b")), "conflicting `model` fields in the form", "model"),
        (CT, form(part("model", "a"), AUDIO, part("model", "a "), ), "conflicting `model` fields in the form", "model"),
        (CT, b'--XyZ\nContent-Disposition: form-data; name="model"\n\nw\n--XyZ--\n', "malformed multipart body", None),
        (CT, b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\nw\r\n--XyZ--\r\n', "malformed multipart body", None),
    ],
    ids=["json", "urlencoded", "no-content-type", "no-boundary", "empty-boundary", "charset-only", "conflict",
         "conflict-space", "bare-lf", "no-blank-line"],
)
def test_multipart_rejections(content_type: str, body: bytes, detail: str, param) -> None:
    error = raises(multipart_model, content_type, body)
    assert (error.status, error.code, error.detail, error.param) == (400, "INVALID_REQUEST", detail, param)
