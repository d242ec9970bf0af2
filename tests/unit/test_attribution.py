"""gateway/serving/edits.py attribute(): in service_key mode a JSON body's `user` is the key's user id."""

from __future__ import annotations

import orjson
import pytest

from gateway.serving.edits import attribute

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("body", "takes_user", "expected"),
    [
        (b'{"model": "m"}', True, b'{"user":"u1","model": "m"}'),  # spliced: the rest untouched
        (b' \n{ "model": "m"}', True, b' \n{"user":"u1", "model": "m"}'),
        (b"{}", True, b'{"user":"u1"}'),
        (b"{ \r\n }\n", True, b'{"user":"u1" \r\n }\n'),
        (b'{"model": "m"}', False, b'{"model": "m"}'),  # a route without `user`: nothing to add
        (b'{"model": "m", "user": "u1"}', True, b'{"model": "m", "user": "u1"}'),  # already the key's
    ],
    ids=["splice", "leading-space", "empty-object", "empty-object-spaces", "route-without-user", "already-right"],
)
def test_bodies_kept_or_spliced(body: bytes, takes_user: bool, expected: bytes) -> None:
    out = attribute(body, orjson.loads(body), "u1", takes_user)
    assert out == expected
    assert orjson.loads(out).get("user") == ("u1" if takes_user else None)


@pytest.mark.parametrize("takes_user", [True, False])
@pytest.mark.parametrize("value", ["victim", "", None, 7, ["u1"], {"id": "u1"}])
def test_a_clients_user_is_replaced(value, takes_user: bool) -> None:
    """Whatever the client put in `user`, on any route: one `user`, the key's user id."""
    body = orjson.dumps({"model": "m", "user": value, "messages": [{"role": "user"}]})
    out = attribute(body, orjson.loads(body), "u1", takes_user)
    assert orjson.loads(out) == {"model": "m", "user": "u1", "messages": [{"role": "user"}]}
    assert out.count(b'"user":') == 1
