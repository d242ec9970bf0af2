"""Which headers cross the gateway, in each direction (RFC 9110 section 7.6.1)."""

import pytest

from gateway.upstream import ATTRIBUTION_HEADERS, CREDENTIAL_HEADERS, dropped_headers, forward_headers, response_headers

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


def test_dropped_headers_per_mode():
    passthrough = dropped_headers(service_key=False, key_header_name="X-My-Key")
    assert CREDENTIAL_HEADERS <= passthrough and b"x-my-key" in passthrough
    assert ATTRIBUTION_HEADERS.isdisjoint(passthrough)  # a virtual key's end users are LiteLLM's business
    assert ATTRIBUTION_HEADERS <= dropped_headers(service_key=True)


def test_every_credential_and_attribution_header_is_dropped_and_replaced():
    headers = [(b"authorization", b"Bearer sk-client"), (b"api-key", b"a"), (b"x-api-key", b"b"),
               (b"x-litellm-api-key", b"c"), (b"x-goog-api-key", b"d"), (b"ocp-apim-subscription-key", b"e"),
               (b"cookie", b"token=f"), (b"x-my-key", b"g"), (b"x-litellm-end-user-id", b"victim"),
               (b"x-litellm-customer-id", b"victim"), (b"x-trace", b"t")]
    out = forward_headers(headers, extra=[("authorization", "Bearer sk-service"), ("x-litellm-customer-id", "u1")],
                          dropped=dropped_headers(service_key=True, key_header_name="x-my-key"))
    assert out == {"x-trace": "t", "authorization": "Bearer sk-service", "x-litellm-customer-id": "u1"}


def test_connection_never_removes_the_headers_the_body_was_read_by():
    headers = [(b"connection", b"content-type, content-encoding, x-hop"), (b"content-type", b"application/json"),
               (b"content-encoding", b"identity"), (b"x-hop", b"1")]
    assert forward_headers(headers) == {"content-type": "application/json", "content-encoding": "identity"}
