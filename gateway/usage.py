"""Token counts from the `usage` LiteLLM returns, plain or streamed, for metrics.

Reads the response as it passes without holding up a chunk: only the bytes after a
`"usage"` marker are kept, and two regular expressions read the counts at the end.
"""

from __future__ import annotations

import re

from gateway.metrics import TALLY, TOKENS

_MARKER = b'"usage"'
_PROMPT = re.compile(rb'"(?:prompt_tokens|input_tokens)"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"(?:completion_tokens|output_tokens)"\s*:\s*(\d+)')
_KEEP = 4096  # bytes after the marker: a usage object is far smaller


class UsageTap:
    __slots__ = ("_tail", "_found", "_streaming")

    def __init__(self, streaming: bool) -> None:
        self._streaming = streaming
        self._tail = b""
        self._found = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        index = data.rfind(_MARKER)
        if index >= 0:
            self._found = data[index : index + _KEEP]
        elif self._found and len(self._found) < _KEEP:
            self._found += chunk[: _KEEP - len(self._found)]
        # keep a marker's worth of bytes in case it is split across chunks
        self._tail = data[-len(_MARKER) :]

    def counts(self) -> tuple[int, int] | None:
        if not self._found:
            return None
        prompt = _PROMPT.search(self._found)
        completion = _COMPLETION.search(self._found)
        if prompt is None and completion is None:
            return None
        return (int(prompt.group(1)) if prompt else 0, int(completion.group(1)) if completion else 0)

    def record(self, model_label: str) -> None:
        counts = self.counts()
        if counts is None:
            return
        prompt, completion = counts
        if prompt:
            TALLY.inc(TOKENS, (model_label, "prompt"), prompt)
        if completion:
            TALLY.inc(TOKENS, (model_label, "completion"), completion)
