"""gateway/serving/streamusage.py: the stream usage request spliced in, and its answer taken out."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.serving.streamusage import UsageStripper, ask_for_usage

pytestmark = pytest.mark.unit

CHAT = "/v1/chat/completions"


def test_the_usage_request_is_spliced_in_only_for_a_stream_that_does_not_say():
    body = b'{"model":"m","stream":true}'
    assert ask_for_usage(body, orjson.loads(body), CHAT) == b'{"stream_options":{"include_usage":true},"model":"m","stream":true}'
    for other in (b'{"model":"m"}', b'{"model":"m","stream":"true"}',
                  b'{"model":"m","stream":true,"stream_options":{"include_usage":false}}'):
        assert ask_for_usage(other, orjson.loads(other), CHAT) is None
    assert ask_for_usage(body, orjson.loads(body), "/v1/embeddings") is None


CONTENT = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\n\n'
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":5}}\n\n'
DONE = b"data: [DONE]\n\n"
LITELLMS = (b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{}}],'
            b'"usage":{"completion_tokens":11,"prompt_tokens":8,"total_tokens":19}}\n\n')
LAST_WITH_USAGE = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}\n\n'


def test_litellms_usage_event_is_removed_and_an_event_with_news_is_kept():
    stripper = UsageStripper()
    assert stripper.feed(CONTENT + LITELLMS + DONE) == CONTENT + DONE
    assert stripper.feed(LAST_WITH_USAGE) == LAST_WITH_USAGE


@pytest.mark.parametrize("size", [1, 7, 50, 1000])
def test_the_usage_event_is_removed_however_the_stream_is_cut_into_chunks(size):
    stream = CONTENT * 3 + USAGE + DONE
    stripper = UsageStripper()
    out = b"".join(stripper.feed(stream[i:i + size]) for i in range(0, len(stream), size)) + stripper.end()
    assert out == CONTENT * 3 + DONE  # LiteLLM's own "usage": null stays
    assert stripper.events == 5


def test_counting_only_passes_every_chunk_as_it_is():
    stripper = UsageStripper(strip=False)
    assert [stripper.feed(c) for c in (CONTENT, USAGE, DONE)] == [CONTENT, USAGE, DONE]
    assert stripper.events == 3


def test_an_unterminated_last_event_is_passed_at_the_end():
    stripper = UsageStripper()
    assert stripper.feed(CONTENT + b"data: {") == CONTENT
    assert stripper.end() == b"data: {"


SPACED_USAGE = b'data: {"choices": [], "usage" : {"prompt_tokens": 2}}\n\n'  # another server's spacing
EVENTS = {CONTENT: True, USAGE: False, DONE: True, LITELLMS: False, LAST_WITH_USAGE: True, SPACED_USAGE: False}


@given(st.lists(st.sampled_from(sorted(EVENTS)), max_size=12), st.lists(st.integers(1, 300), min_size=1, max_size=8))
def test_exactly_the_usage_only_events_are_removed_from_any_stream_cut_anywhere(events, cuts):
    """Any order of events (usage events next to each other, first, last, several), cut into chunks
    of any sizes: what comes out is every event with news, in order, and the events are all counted."""
    stream = b"".join(events)
    stripper = UsageStripper()
    out, position, index = [], 0, 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        out.append(stripper.feed(stream[position:position + size]))
        position, index = position + size, index + 1
    assert b"".join(out) + stripper.end() == b"".join(e for e in events if EVENTS[e])
    assert stripper.events == len(events)
