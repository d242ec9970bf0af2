"""One reading of every request: what the gateway decides on is what LiteLLM will act on.

LiteLLM chooses its body parser by the Content-Type's media type (litellm/proxy/common_utils/
http_parsing_utils.py, `read_request_body`: split at ";", stripped, lowercased):
`application/x-www-form-urlencoded` and `multipart/form-data` are read as a form
(Starlette's `request.form()`), `application/x-protobuf` / `application/protobuf` as JSON
when the bytes are a JSON object, and every other type, none included, as JSON (orjson, then
a forgiving fallback). Some handlers read the bytes as JSON whatever the type (images,
speech, moderations, rerank). FastAPI hands a handler the query string's `model` (it wins
over the body's) and the path's `{model}` (it wins too). So the gateway reads one way per
route family and refuses a request that LiteLLM could read another way:

    route family                 Content-Type (media type: any case, any parameters)  the gateway
    ---------------------------  ---------------------------------------------------  ----------------------------
    JSON: /v1/chat/completions,  application/json, or none, or empty                  the body as one JSON object
      /v1/completions,           application/x-www-form-urlencoded                    415 (curl -d without -H
      /v1/embeddings, ...,                                                              sends this: say so)
      config routes `body`       multipart/form-data, application/(x-)protobuf,       415
                                 text/plain, anything else
    path model: /openai/         as JSON, when the body is not empty: its `model`     path and body must agree
      deployments/{m}/...,       must agree with the path's (LiteLLM acts on the
      /engines/{m}/...           path's, and reports and checks the body's)
                                 an empty body, any type                              the path's model alone
    multipart: /v1/audio/        multipart/form-data with a boundary                  Starlette's own parser
      transcriptions, config     anything else, none included                         415
      routes `multipart`
    `none` (config routes)       not read                                             forwarded as received

    every route with a body:  more than one Content-Type header, a Content-Type that is not
                              printable ASCII (forwarding would re-encode it), a Content-Encoding
                              other than identity (LiteLLM does not decode bodies)        415
    every route:              the query string's `model` (all its values must agree)

A form is read by Starlette's MultiPartParser, the one LiteLLM's `request.form()` runs, with
the file contents dropped; its fields become what LiteLLM's transcription handler gets
(`get_form_data`: the last of a repeated field, `name[]` fields as lists). Repeated `model`
fields that differ, a `model[]`, a file named `model`, and a name sent both with and without
`[]` are refused. policies/requests.py then decides whether the names agree and which fields
are refused; the proxy forwards exactly the bytes read here.

read_request() is the proxy's one call: it receives the body (413 over server.max_body_bytes,
before reading when Content-Length says so), bounds its JSON's size (gateway/serving/bodylimits.py),
reads it as above and returns an Inbound: the bytes to forward, the reading, the facts
policies/requests.py made of it (its Deny raised as a 400), the primary model and the stream flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Iterable, Mapping
from urllib.parse import parse_qs

import orjson
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import InvalidRequestError, RequestTooLargeError, UnsupportedMediaTypeError, from_denial
from gateway.serving.bodylimits import refuse_dense_json
from gateway.serving.disconnect import ClientDisconnected
from gateway.serving.routes import Route
from policies.records import Deny, RequestFacts
from policies.requests import request_facts

JSON = b"application/json"
MULTIPART = b"multipart/form-data"
_FORM = b"application/x-www-form-urlencoded"
_SEND_JSON = "send the body as JSON with 'Content-Type: application/json'"
_SEND_FORM = "send the body as multipart/form-data (with its boundary) in 'Content-Type'"
# A header value the gateway can forward unchanged: aiohttp writes header values as UTF-8,
# so a byte above 0x7e would reach LiteLLM as another value (another multipart boundary).
_PRINTABLE = re.compile(rb"[\t\x20-\x7e]*")


@dataclass(slots=True)  # not frozen: that costs ~0.3 us a request (object.__setattr__ per field)
class Reading:
    """What a request names, read as LiteLLM will read it.

    `sources`: the model name per source ("path", "body", "query"; absent or None when the
    source names none; the body's value as it is, for policies/requests.py to judge).
    `fields`: the body's fields as LiteLLM's handler gets them (the JSON object, or the
    form's fields), None when the body was not read. `json`: whether `fields` is the JSON
    object parsed from the bytes that are forwarded (the attribution edit works on it).
    """

    sources: dict[str, Any]
    fields: Mapping[str, Any] | None = None
    json: bool = False


@dataclass(slots=True)
class Inbound:
    """A request as the proxy needs it, read once (read_request)."""

    body: bytes  # the bytes read: what is forwarded, but for the two documented edits (gateway/serving/edits.py)
    reading: Reading
    facts: RequestFacts  # every model name the request could reach, the primary one first
    model: str | None  # the primary model; None on a route that names none
    stream: bool  # a JSON body's `"stream": true`


class FormFile:
    """A file part of a form, in `Reading.fields`: never a model name or a fallback."""

    __slots__ = ("filename",)

    def __init__(self, filename: str | None) -> None:
        self.filename = filename

    def __repr__(self) -> str:
        return f"FormFile({self.filename!r})"


def read(route: Route, headers: Iterable[tuple[bytes, bytes]], query_string: bytes, body: bytes,
         path_model: str | None = None) -> Reading:
    """The one reading of a request (see the module's table); InvalidRequestError (400) or
    UnsupportedMediaTypeError (415) when it cannot be read the way LiteLLM reads it."""
    source = route.model_source
    sources: dict[str, Any] = {}
    fields: Mapping[str, Any] | None = None
    if source == "body" or (source == "path" and body):
        content_type = _content_type(headers)
        if content_type is not None and content_type != JSON:  # the usual value costs one comparison
            kind = media_type(content_type)
            if kind != JSON and kind != b"":
                raise UnsupportedMediaTypeError(detail=_json_advice(kind))
        if source == "path":
            sources["path"] = path_model
        fields = json_object(body)
        sources["body"] = fields.get("model")
    elif source == "path":
        sources["path"] = path_model
    elif source == "multipart":
        content_type = _content_type(headers)
        if content_type is None or media_type(content_type) != MULTIPART:
            raise UnsupportedMediaTypeError(detail=_SEND_FORM)
        fields = form_fields(content_type.decode("ascii"), body)
        sources["body"] = fields.get("model")
    if query_string:
        sources["query"] = query_model(query_string)
    return Reading(sources, fields, json=fields is not None and source != "multipart")


def _content_type(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The request's one Content-Type value (None without one); 415 for two, or for a
    Content-Encoding other than identity. ASGI servers give header names in lowercase."""
    content_type = None
    for name, value in headers:
        if name == b"content-type":
            if content_type is not None:
                raise UnsupportedMediaTypeError(detail="more than one Content-Type header")
            content_type = value
        elif name == b"content-encoding" and value.strip(b" \t").lower() != b"identity":
            raise UnsupportedMediaTypeError(detail="send the body uncompressed, without Content-Encoding")
    return content_type


def media_type(content_type: bytes) -> bytes:
    """The media type as LiteLLM normalises it (before ";", stripped, lowercased), of a value
    that is printable ASCII (else 415): there, LiteLLM's and Starlette's readings are this one."""
    if not _PRINTABLE.fullmatch(content_type):
        raise UnsupportedMediaTypeError(detail="the Content-Type header must be printable ASCII")
    return content_type.split(b";", 1)[0].strip(b" \t").lower()


def _json_advice(kind: bytes) -> str:
    if kind == _FORM:
        return (f"{_SEND_JSON}, not {_FORM.decode()}"
                " (curl -d without -H 'Content-Type: application/json' sends that)")
    return f"{_SEND_JSON}, not {kind.decode()}"


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, parsed by orjson as LiteLLM parses it."""
    if not body:
        raise InvalidRequestError(detail="the request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(detail=f"the body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(detail="the body must be a JSON object")
    return data


def query_model(query_string: bytes) -> str | None:
    """`model` from the query string, decoded as Starlette decodes it; conflicting repeats are an error."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("model")
    if not values:
        return None
    if len(set(values)) > 1:
        raise InvalidRequestError(detail="conflicting `model` values in the query string", param="model")
    return values[0]


class _FieldsOnlyParser(MultiPartParser):
    """Starlette's multipart parser (the one LiteLLM runs) with the file contents dropped: names,
    charsets, limits and errors are its own. Nothing is written, so parse() never suspends."""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is None:
            super().on_part_data(data, start, end)


def form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart body's fields as LiteLLM's transcription handler gets them (`get_form_data`):
    a repeated name's last value, `name[]` parts as a list under `name`, files as FormFile."""

    parser = _FieldsOnlyParser(Headers(raw=[(b"content-type", content_type.encode("ascii"))]), _OneChunk(body))
    try:
        form = _finish(parser.parse())
    except MultiPartException as exc:
        raise InvalidRequestError(detail=f"malformed multipart body: {exc.message}") from None
    items = [(name, _file(value) if isinstance(value, UploadFile) else value) for name, value in form.multi_items()]
    fields: dict[str, Any] = {}
    listed: set[str] = set()
    for name, value in items:
        if name == "model[]" or (name == "model" and isinstance(value, FormFile)):
            raise InvalidRequestError(detail="`model` must be one form field, not a list or a file", param="model")
        if name == "model" and fields.get("model", value) != value:
            raise InvalidRequestError(detail="conflicting `model` fields in the form", param="model")
        if name.endswith("[]"):
            name = name[:-2]
            if name in fields and name not in listed:
                raise InvalidRequestError(detail=f"the form sends `{name}` both as `{name}` and as `{name}[]`")
            listed.add(name)
            fields.setdefault(name, []).append(value)
        elif name in listed:
            raise InvalidRequestError(detail=f"the form sends `{name}` both as `{name}` and as `{name}[]`")
        else:
            fields[name] = value
    return fields


def _file(upload: UploadFile) -> FormFile:
    upload.file.close()
    return FormFile(upload.filename)


class _OneChunk:
    """The body as the async stream the parser reads: one chunk, and no event loop needed."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body

    def __aiter__(self) -> "_OneChunk":
        return self

    async def __anext__(self) -> bytes:
        if self._body is None:
            raise StopAsyncIteration
        chunk, self._body = self._body, None
        return chunk


def _finish(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends to its end, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the multipart parser suspended")  # pragma: no cover - a Starlette change


_EMPTY_REST = re.compile(rb"[ \t\r\n]*}")  # what follows the "{" of an empty JSON object


def splice_field(body: bytes, name: str, value: Any) -> bytes:
    """The JSON object `body` with `"name": value` added first, the rest not re-serialised: the
    one way the forwarded bytes are edited (the attribution and the stream usage request).
    The caller knows the object has no `name` yet (its reading's fields say so)."""
    start = body.find(b"{") + 1
    comma = b"" if _EMPTY_REST.match(body, start) else b","
    return body[:start] + orjson.dumps(name) + b":" + orjson.dumps(value) + comma + body[start:]



def refuse_declared_excess(headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """413 before reading, when Content-Length already says the body is over `limit`."""
    for name, value in headers:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise RequestTooLargeError(detail=f"limit is {limit} bytes")
            return


async def read_rest(first: dict, receive: Callable[[], Awaitable[dict]], limit: int) -> bytes:
    """The whole request body from its first message on, refusing more than `limit` bytes (413)."""
    message = first
    body = message.get("body", b"")
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(detail=f"limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_request(route: Route, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]],
                       path_model: str | None, max_body_bytes: int, max_json_elements: int) -> Inbound:
    """The request's body, reading and facts, in one call (see the module's docstring).

    A body in one message (the usual case) is taken as it is: no extra coroutine."""
    headers = scope["headers"]
    refuse_declared_excess(headers, max_body_bytes)
    message = await receive()
    body = await read_rest(message, receive, max_body_bytes) if message.get("more_body") else message.get("body", b"")
    refuse_dense_json(body, max_json_elements)  # before any parse: bounds its memory
    reading = read(route, headers, scope.get("query_string", b""), body, path_model)
    facts = request_facts(reading.sources, reading.fields, model_required=route.model_source != "none")
    if isinstance(facts, Deny):
        raise from_denial(facts)
    fields = reading.fields
    return Inbound(body, reading, facts, facts.models[0] if facts.models else None,
                   reading.json and fields is not None and fields.get("stream") is True)
