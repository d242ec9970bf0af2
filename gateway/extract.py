"""Where a request names its model: the JSON body, a multipart field, the query string.

These only parse; policies/requests.py decides whether the names agree and are allowed.
Each raises InvalidRequestError with a message that says what is wrong.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import InvalidRequestError


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object."""
    if not body:
        raise InvalidRequestError(detail="the request body is empty; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(detail=f"the body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(detail="the body must be a JSON object")
    return data


MAX_FIELD_BYTES = 1024


def query_model(query_string: bytes) -> str | None:
    """`model` from the query string (decoded as LiteLLM decodes it); conflicting repeats are an error."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("model")
    if not values:
        return None
    if len(set(values)) > 1:
        raise InvalidRequestError(detail="conflicting `model` values in the query string", param="model")
    return values[0]


def multipart_model(content_type: str, body: bytes) -> str | None:
    """The `model` form field of a multipart/form-data body.

    Parsed with python-multipart, the parser Starlette (and so LiteLLM) uses, so the
    gateway reads the same `model` LiteLLM will. Repeated fields that disagree, and a
    file part named `model`, are refused.
    """
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise InvalidRequestError(detail="this route takes multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequestError(detail="multipart request without a boundary in Content-Type")
    reader = _ModelFieldReader()
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise InvalidRequestError(detail="malformed multipart body") from None
    if reader.file_named_model:
        raise InvalidRequestError(detail="`model` must be a form field, not a file", param="model")
    if len(set(reader.values)) > 1:
        raise InvalidRequestError(detail="conflicting `model` fields in the form", param="model")
    return reader.values[-1].decode("utf-8", "replace") if reader.values else None


class _ModelFieldReader:
    """Callbacks for MultipartParser that keep only the `model` field's values."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.file_named_model = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._data: bytearray | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._data = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if options.get(b"name") != b"model":
            return
        if b"filename" in options:
            self.file_named_model = True
        else:
            self._data = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._data is not None:
            if len(self._data) + end - start > MAX_FIELD_BYTES:
                raise InvalidRequestError(detail="the `model` form field is too long", param="model")
            self._data += data[start:end]

    def _part_end(self) -> None:
        if self._data is not None:
            self.values.append(bytes(self._data))
            self._data = None
