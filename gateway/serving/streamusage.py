"""A stream's token usage when the client did not ask for it: the second documented edit.

    ask_for_usage(body, parsed, route)  the body with `"stream_options":{"include_usage":true}`
                                        spliced in (nothing else re-serialised), or None when the
                                        request is no stream, asks already, or says otherwise
    UsageStripper.feed(chunk)           the stream without the usage event the gateway asked for
                                        (a `usage` object in an event that carries nothing else:
                                        OpenAI's `"choices":[]`, LiteLLM's one choice with an empty
                                        `delta`, just before `data: [DONE]`); other events, and
                                        LiteLLM's `"usage": null` fields in them, pass unchanged

Only events are held back, never more: the bytes after the last complete event wait for the
next chunk (a usage event is always whole before it is judged). `events` counts the `data:`
events forwarded: a stream cut before its usage is charged one completion token per event.
"""

from __future__ import annotations

import re

import orjson

from gateway.serving.reader import splice_field

# Routes whose streams LiteLLM closes with a usage chunk when asked (OpenAI's stream_options).
USAGE_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions"})
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def ask_for_usage(body: bytes, parsed: dict | None, route: str) -> bytes | None:
    if route not in USAGE_ROUTES or parsed is None or parsed.get("stream") is not True or "stream_options" in parsed:
        return None
    return splice_field(body, "stream_options", {"include_usage": True})


def is_usage_event(event: bytes) -> bool:
    """An event whose only news is its `usage` (parsed only when it holds a usage object)."""
    if _USAGE_OBJECT.search(event) is None or not event.startswith(b"data: "):
        return False
    try:
        data = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return False
    choices = data.get("choices") if isinstance(data, dict) else None
    return isinstance(choices, list) and all(
        isinstance(c, dict) and not c.get("delta") and c.get("finish_reason") is None and not c.get("text")
        for c in choices)


class UsageStripper:
    def __init__(self, strip: bool = True) -> None:
        self._held = b""
        self._strip = strip  # False: count the events only
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        if not self._strip:
            self.events += chunk.count(b"data: ")
            return chunk
        data = self._held + chunk if self._held else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._held = data
            return b""
        complete, self._held = data[: end + 2], data[end + 2:]
        self.events += complete.count(b"data: ")
        match = _USAGE_OBJECT.search(complete)
        if match is None:  # no usage object: no event here is a usage event
            return complete
        # Only the events holding a usage object are judged (events end with a blank line; JSON
        # strings hold no raw newline): a stream's chunks are not split into all their events.
        pieces: list[bytes] = []
        position = 0  # where the events not yet copied begin
        while match is not None:
            start = complete.rfind(b"\n\n", position, match.start())
            start = start + 2 if start >= 0 else position
            stop = complete.find(b"\n\n", match.end()) + 2
            if is_usage_event(complete[start:stop - 2]):
                pieces.append(complete[position:start])
                position = stop
            match = _USAGE_OBJECT.search(complete, stop)
        if not position:
            return complete
        pieces.append(complete[position:])
        return b"".join(pieces)

    def end(self) -> bytes:
        """Whatever is held when the stream ends (an unterminated last event), as it came."""
        held, self._held = self._held, b""
        return held
