"""Which headers cross the gateway, in each direction (RFC 9110 section 7.6.1)."""

import pytest

from gateway.serving.upstream import (
    ATTRIBUTION_HEADERS,
    CREDENTIAL_HEADERS,
    allowed_headers,
    dropped_headers,
    forward_headers,
    response_headers,
)

pytestmark = pytest.mark.unit


def test_request_headers_lose_hop_by_hop_ones_credentials_and_what_connection_names():
    headers = [
        (b"host", b"gw"), (b"connection", b"keep-alive, x-hop"), (b"connection", b"X-Other"), (b"x-hop", b"1"),
        (b"x-other", b"2"), (b"te", b"trailers"), (b"authorization", b"Bearer sk-client"), (b"x-api-key", b"k"),
        (b"content-length", b"12"), (b"accept", b"a"), (b"accept", b"b"), (b"x-trace", b"t\xe9"),
    ]
    out = forward_headers(headers, extra=[("authorization", "Bearer sk-service"), ("x-request-id", "r1")])
    assert out == {"accept": "a, b", "x-trace": "t\xe9", "authorization": "Bearer sk-service", "x-request-id": "r1"}


# What the real LiteLLM 1.108.7 answered a chat completion with (tests/e2e/litellm-test.yaml).
LITELLM_HEADERS = [
    (b"date", b"Mon, 30 Nov 2026 17:07:09 GMT"), (b"content-length", b"317"), (b"content-type", b"application/json"),
    (b"x-litellm-call-id", b"c0bcd167"), (b"x-litellm-model-id", b"263ff16d"), (b"x-litellm-model-name", b"openai/gpt-4o-mini"),
    (b"x-litellm-model-api-base", b"https://api.openai.com"), (b"x-litellm-version", b"1.108.7"),
    (b"x-litellm-response-cost", b"1.35e-05"), (b"x-litellm-key-spend", b"1.35e-05"), (b"x-litellm-timeout", b"6000.0"),
    (b"x-litellm-model-group", b"gpt-4o-mini"), (b"x-litellm-attempted-retries", b"0"), (b"vary", b"Origin"),
    (b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"), (b"x-ratelimit-remaining-requests", b"9999"),
    (b"llm_provider-x-ratelimit-remaining-tokens", b"10"), (b"server", b"uvicorn"), (b"x-request-id", b"litellms"),
    (b"retry-after", b"2"), (b"x-should-retry", b"false"), (b"set-cookie", b"a=1"),
]


def test_response_headers_pass_by_allow_list():
    assert response_headers(LITELLM_HEADERS) == [
        (b"content-length", b"317"), (b"content-type", b"application/json"), (b"retry-after", b"2"),
        (b"x-should-retry", b"false"),
    ]


def test_an_operators_additions_pass_too():
    allow = allowed_headers(["X-LiteLLM-Response-Cost"])
    assert response_headers(LITELLM_HEADERS, allow) == [
        (b"content-length", b"317"), (b"content-type", b"application/json"), (b"x-litellm-response-cost", b"1.35e-05"),
        (b"retry-after", b"2"), (b"x-should-retry", b"false"),
    ]


def test_a_stream_keeps_what_stops_proxies_from_buffering_it():
    raw = [(b"Date", b"d"), (b"Cache-Control", b"no-cache"), (b"X-Accel-Buffering", b"no"),
           (b"Content-Type", b"text/event-stream; charset=utf-8"), (b"Transfer-Encoding", b"chunked"),
           (b"Content-Encoding", b"gzip")]
    assert response_headers(raw) == [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"),
                                     (b"content-type", b"text/event-stream; charset=utf-8"), (b"content-encoding", b"gzip")]


def test_what_connection_names_is_dropped_even_when_allowed():
    raw = [(b"Connection", b"close, X-Cost"), (b"X-Cost", b"1"), (b"Content-Type", b"application/json")]
    assert response_headers(raw, allowed_headers(["x-cost"])) == [(b"content-type", b"application/json")]


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
