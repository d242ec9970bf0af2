"""Token counts read from the end of LiteLLM's response (gateway/limits/usage.py)."""

import pytest

from gateway.limits.usage import usage_counts

pytestmark = pytest.mark.unit


def test_a_plain_chat_completion():
    body = b'{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":3}}}'
    assert usage_counts(body) == (12, 7)
    assert usage_counts(bytearray(body)) == (12, 7)


def test_spaces_around_the_colon_and_the_responses_api_names():
    body = b'{"usage": {"input_tokens" : 5, "input_tokens_details": {"cached_tokens": 1}, "output_tokens":\n 9}}'
    assert usage_counts(body) == (5, 9)


def test_a_stream_counts_its_last_usage():
    events = (b'data: {"choices":[{"delta":{"content":"Hi"}}],"usage":null}\n\n'
              b'data: {"choices":[],"usage":{"prompt_tokens":21,"completion_tokens":4}}\n\ndata: [DONE]\n\n')
    assert usage_counts(events) == (21, 4)


def test_only_one_of_the_counts():
    assert usage_counts(b'{"usage":{"prompt_tokens":8}}') == (8, 0)


def test_no_usage_or_no_number():
    assert usage_counts(b'{"choices":[]}') is None
    assert usage_counts(b'{"usage":null}') is None
    assert usage_counts(b'{"usage":{"prompt_tokens":null}}') is None
    assert usage_counts(b'{"content":"the \\"usage\\" of words"}') is None  # quoted inside a string

