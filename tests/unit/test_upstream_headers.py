"""Which headers cross the gateway, in each direction (RFC 9110 section 7.6.1)."""

import pytest

from gateway.upstream import forward_headers, response_headers

pytestmark = pytest.mark.unit


def test_request_headers_lose_hop_by_hop_ones_credentials_and_what_connection_names():
    headers = [
        (b"host", b"gw"), (b"connection", b"keep-alive, x-hop"), (b"connection", b"X-Other"), (b"x-hop", b"1"),
        (b"x-other", b"2"), (b"te", b"trailers"), (b"authorization", b"Bearer sk-client"), (b"x-api-key", b"k"),
        (b"content-length", b"12"), (b"accept", b"a"), (b"accept", b"b"), (b"x-trace", b"t\xe9"),
    ]
    out = forward_headers(headers, extra=[("authorization", "Bearer sk-service"), ("x-request-id", "r1")])
    assert out == {"accept": "a, b", "x-trace": "t\xe9", "authorization": "Bearer sk-service", "x-request-id": "r1"}


def test_response_headers_are_lowercased_without_hop_by_hop_ones():
    raw = [(b"Content-Type", b"application/json"), (b"Connection", b"close, X-Hop"), (b"X-Hop", b"1"),
           (b"Transfer-Encoding", b"chunked"), (b"X-LiteLLM-Model", b"m"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]
    assert response_headers(raw) == [(b"content-type", b"application/json"), (b"x-litellm-model", b"m"),
                                     (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]


def test_nothing_to_drop():
    assert response_headers([(b"content-length", b"2")]) == [(b"content-length", b"2")]
    assert forward_headers([(b"accept", b"*/*")]) == {"accept": "*/*"}
