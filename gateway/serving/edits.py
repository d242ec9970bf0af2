"""The bytes forwarded to LiteLLM: the bytes read (gateway/serving/reader.py), with the two
documented edits and no other.

    attribution     service_key mode: the JSON body's `user` is the key's user id, whatever the
                    client sent (attribute(); the x-litellm-customer-id header, which LiteLLM
                    bills by before any body field, is set by the proxy's headers)
    usage request   a JSON stream the gateway meters asks LiteLLM for its usage chunk
                    (gateway/serving/streamusage.py, which also strips that chunk on the way back)
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from gateway.serving.reader import Inbound, splice_field
from gateway.serving.routes import PATH_MODEL_ROUTES
from gateway.serving.streamusage import ask_for_usage

# Routes whose OpenAI request takes a `user` field (service_key mode fills it in when absent).
USER_FIELD_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/images/generations",
     *PATH_MODEL_ROUTES}
)


def attribute(body: bytes, fields: Mapping[str, Any] | None, user_id: str, takes_user: bool) -> bytes:
    """service_key mode: the JSON body to forward, whose `user` (when it has one, or the route
    takes one) is the key's user id, whatever the client sent. A client's own `user` is replaced,
    not kept elsewhere: LiteLLM also reads an end user from `metadata` and `litellm_metadata`."""
    assert fields is not None, "a JSON reading has fields"
    if "user" in fields:
        if fields["user"] == user_id:
            return body
        return orjson.dumps({**fields, "user": user_id})  # one `user`, not a duplicate key: rare
    return splice_field(body, "user", user_id) if takes_user else body


def forwarded_body(inbound: Inbound, route: str, attribute_to: str | None, metered: bool) -> tuple[bytes, bool]:
    """(the bytes to forward, whether they ask for the stream's usage chunk).

    `attribute_to`: the key's user id in service_key mode, None in passthrough; `metered`: the
    request's tokens are counted (a limit or usage records apply), so a stream needs its usage."""
    body = inbound.body
    reading = inbound.reading
    if not reading.json:  # a form or an unread body goes as it came
        return body, False
    if attribute_to is not None:
        body = attribute(body, reading.fields, attribute_to, route in USER_FIELD_ROUTES)
    if metered and inbound.stream and (asked := ask_for_usage(body, reading.fields, route)):  # type: ignore[arg-type]
        return asked, True
    return body, False
