"""Token counts from the `usage` LiteLLM returns, plain or streamed, for metrics.

`usage` closes a plain response and sits in the last event of a stream, so the proxy
keeps only the end of each response as it passes (a bytearray append per chunk, cut
back to TAIL_BYTES now and then) and the counts are read from it once, when the
response is complete: a substring search for each field name, then a match anchored
right after it, instead of a call per chunk and a regular expression searching for the
names (docs/performance.md, "Third round"). A `usage` further than TAIL_BYTES from the
end of a response is not counted.
"""

from __future__ import annotations

import re

from gateway.ops.metrics import TALLY, TOKENS

_MARKER = b'"usage"'
# Chat and completions name them prompt/completion_tokens; the Responses API input/output_tokens.
_PROMPT = (b'"prompt_tokens"', b'"input_tokens"')
_COMPLETION = (b'"completion_tokens"', b'"output_tokens"')
_VALUE = re.compile(rb"\s*:\s*(\d+)")
TAIL_BYTES = 4096  # how much of a response's end is read: a usage object is far smaller
TAIL_LIMIT = 2 * TAIL_BYTES  # the tail is cut back to TAIL_BYTES when it grows past this


def usage_counts(tail: bytes | bytearray) -> tuple[int, int] | None:
    """(prompt, completion) from the last `usage` in a response's tail, or None."""
    index = tail.rfind(_MARKER)
    if index < 0:
        return None
    prompt = _count(tail, index, _PROMPT)
    completion = _count(tail, index, _COMPLETION)
    if prompt is None and completion is None:
        return None
    return (prompt or 0, completion or 0)


def record_usage(tail: bytes | bytearray, model_label: str) -> None:
    counts = usage_counts(tail)
    if counts is None:
        return
    prompt, completion = counts
    if prompt:
        TALLY.inc(TOKENS, (model_label, "prompt"), prompt)
    if completion:
        TALLY.inc(TOKENS, (model_label, "completion"), completion)


def _count(data: bytes | bytearray, start: int, names: tuple[bytes, ...]) -> int | None:
    """The number after the first of `names` found in `data` from `start` on, or None."""
    for name in names:
        index = data.find(name, start)
        if index >= 0:
            value = _VALUE.match(data, index + len(name))
            if value is not None:
                return int(value.group(1))
    return None
