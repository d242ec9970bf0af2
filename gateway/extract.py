"""Where a request names its model: the JSON body, a multipart field, the query string.

These only parse; policies/requests.py decides whether the names agree and are allowed.
Each raises InvalidRequestError with a message that says what is wrong.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

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


def query_model(query_string: bytes) -> str | None:
    """`model` from the query string; conflicting repeats are an error."""
    if b"model" not in query_string:
        return None
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("model")
    if not values:
        return None
    if len(set(values)) > 1:
        raise InvalidRequestError(detail="conflicting `model` values in the query string", param="model")
    return values[0]


def _boundary(content_type: str) -> bytes:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise InvalidRequestError(detail="multipart request without a boundary in Content-Type")


def multipart_model(content_type: str, body: bytes) -> str | None:
    """The `model` form field of a multipart/form-data body; conflicting repeats are an error."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequestError(detail="this route takes multipart/form-data")
    delimiter = b"--" + _boundary(content_type)
    found: list[str] = []
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            raise InvalidRequestError(detail="malformed multipart body")
        for line in head.split(b"\r\n"):
            name, _, rest = line.partition(b":")
            if name.strip().lower() != b"content-disposition":
                continue
            params = {}
            for item in rest.split(b";")[1:]:
                key, _, val = item.strip().partition(b"=")
                params[key.lower()] = val.strip(b'"')
            if params.get(b"name") == b"model" and b"filename" not in params:
                found.append(value.removesuffix(b"\r\n").decode("utf-8", "replace"))
    if len(set(found)) > 1:
        raise InvalidRequestError(detail="conflicting `model` fields in the form", param="model")
    return found[0] if found else None
