"""gateway/serving/relay.py: LiteLLM's error answers and mid-stream error events, as clients get them."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import aiohttp
import orjson
import pytest

from gateway.serving import relay
from gateway.serving.relay import StreamErrors, error_answer
from gateway.serving.upstream import _read_at_most
from policies.scrub import REDACTED

pytestmark = pytest.mark.unit

BROKEN = ("litellm.InternalServerError: InternalServerError: OpenAIException - Connection error.\n\nLiteLLM: model "
          "group 'broken-backend' failed with the error above. No fallback was attempted.")
FAILED = ("The model service failed to answer this request. Please try again later; if it keeps failing, give your "
          "administrator the request id. (request id: req-1)")


def litellm_body(message: str, code: int | str, type_: str = "internal_server_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": str(code)}})


def litellm_event(message: str, code: int) -> bytes:
    """A mid-stream error event as LiteLLM writes it (proxy_server.async_data_generator: json.dumps)."""
    error = {"message": message, "type": "None", "param": "None", "code": code}
    return b"data: " + json.dumps({"error": error}).encode() + b"\n\n"


def gateway_error(status: int) -> dict:
    type_ = "service_unavailable_error" if status == 503 else "api_error"
    return {"error": {"message": FAILED, "type": type_, "param": None, "code": "LITELLM_ERROR"}}


CHUNK = b'data: {"id":"c","choices":[{"delta":{"content":"tok"}}]}\n\n'


@pytest.mark.parametrize(("upstream", "client"), [(500, 500), (502, 502), (503, 503), (401, 502), (403, 502)])
def test_an_error_the_user_cannot_act_on_becomes_the_gateways_with_the_request_id(upstream, client):
    log = {"request_id": "req-1"}
    raw = litellm_body(BROKEN, upstream)
    status, body = error_answer(upstream, raw, "req-1", log)
    assert (status, orjson.loads(body)) == (client, gateway_error(client))
    assert log == {"request_id": "req-1", "upstream_status": upstream, "upstream_error": raw.decode()}


def test_litellms_timeout_becomes_the_gateways_timeout():
    status, body = error_answer(408, litellm_body("litellm.Timeout: APITimeoutError - Request timed out.", 408),
                                "req-1", {"request_id": "req-1"})
    assert (status, orjson.loads(body)) == (504, {"error": {
        "message": "The model service did not answer in time. Please try again later. (request id: req-1)",
        "type": "timeout_error", "param": None, "code": "LITELLM_TIMEOUT"}})


def test_an_error_the_user_can_act_on_is_relayed_cleaned():
    raw = litellm_body("litellm.BadRequestError: BadRequestError: OpenAIException - Invalid value for 'n' at "
                       "http://10.0.0.7:8000/v1", 400, "invalid_request_error")
    log = {"request_id": "req-1"}
    status, body = error_answer(400, raw, "req-1", log)
    assert (status, orjson.loads(body)) == (400, {"error": {"message": f"Invalid value for 'n' at {REDACTED}",
                                                            "type": "invalid_request_error", "param": None, "code": "400"}})
    assert log["upstream_error"] == raw.decode()


def test_chunks_without_error_events_pass_as_they_are():
    errors = StreamErrors({"request_id": "req-1"})
    for chunk in (CHUNK, CHUNK * 3, b": ping\n\n", b'data: {"id":"c","choi', b'ces":[]}\n\n', b"data: [DONE]\n\n"):
        assert errors.feed(chunk) is chunk
    assert errors.end() == b""


def test_a_5xx_error_event_becomes_the_gateways_and_the_original_is_logged():
    log = {"request_id": "req-1"}
    errors = StreamErrors(log)
    out = errors.feed(CHUNK + litellm_event(BROKEN, 500) + b"data: [DONE]\n\n")
    assert out == CHUNK + b"data: " + orjson.dumps(gateway_error(500)) + b"\n\ndata: [DONE]\n\n"
    assert "No fallback was attempted" in log["upstream_error"]


def test_a_4xx_error_event_keeps_its_cleaned_meaning():
    errors = StreamErrors({"request_id": "req-1"})
    message = ("litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: "
               "OpenAIException - This model's maximum context length is 8192 tokens. LiteLLM Retried: 2 times")
    out = errors.feed(litellm_event(message, 400))
    assert out == b"data: " + orjson.dumps({"error": {
        "message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error",
        "param": None, "code": "400"}}) + b"\n\n"


@pytest.mark.parametrize("cut", [1, 5, 9, 12, 20, 60, 200])
def test_an_error_event_split_across_chunks_is_held_until_whole(cut):
    event = litellm_event(BROKEN, 500)
    expected = CHUNK + b"data: " + orjson.dumps(gateway_error(500)) + b"\n\n"
    errors = StreamErrors({"request_id": "req-1"})
    stream = CHUNK + event
    at = len(CHUNK) + cut
    first = errors.feed(stream[:at])
    assert first == CHUNK  # the chunk before the error event is not held back
    pieces = [errors.feed(stream[at:at + 7]), errors.feed(stream[at + 7:]), errors.end()]
    assert first + b"".join(pieces) == expected
    assert b"litellm." not in b"".join(pieces)


def test_an_error_event_the_stream_ends_inside_becomes_the_gateways():
    log = {"request_id": "req-1"}
    errors = StreamErrors(log)
    event = litellm_event(BROKEN, 500)
    assert errors.feed(CHUNK + event[:40]) == CHUNK
    assert errors.end() == b"data: " + orjson.dumps(gateway_error(500))
    assert log["upstream_error"] == event[6:40].decode()


def test_the_middle_of_an_ordinary_event_is_not_held():
    errors = StreamErrors({"request_id": "req-1"})
    assert errors.feed(CHUNK + b'data: {"id":"c",') == CHUNK + b'data: {"id":"c",'
    assert errors.feed(b'"choices":[]}') == b'"choices":[]}'
    assert errors.feed(b"\n\n" + CHUNK) == b"\n\n" + CHUNK


def test_an_encoded_error_body_is_read_as_litellm_wrote_it():
    raw = litellm_body("litellm.NotFoundError: NotFoundError: OpenAIException - no such model", 404)
    assert relay._decoded(gzip.compress(raw), "gzip") == raw
    assert relay._decoded(zlib.compress(raw), "deflate") == raw
    assert relay._decoded(raw, "identity") == raw
    assert relay._decoded(b"\x00garbage", "gzip") == b"" and relay._decoded(raw, "br") == b""  # the gateway's words then


async def test_an_error_body_is_read_up_to_its_limit():
    class Protocol:
        _reading_paused = False

        def resume_reading(self, **_: object) -> None:
            pass

    content = aiohttp.StreamReader(Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    for piece in (b"a" * 40, b"b" * 40, b"c" * 40):
        content.feed_data(piece)
    content.feed_eof()
    assert await _read_at_most(content, 100) == b"a" * 40 + b"b" * 40 + b"c" * 20


def response_failed(code: str, message: str) -> bytes:
    """A Responses API stream's failure as LiteLLM writes it (common_utils/responses_stream_errors.py)."""
    payload = {"type": "response.failed", "sequence_number": 3,
               "response": {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o-mini",
                            "status": "failed", "output": [], "error": {"code": code, "message": message}}}
    return b"event: response.failed\ndata: " + json.dumps(payload).encode() + b"\n\n"


DELTA = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"tok"}\n\n'


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("server_error", FAILED),
        ("rate_limit_exceeded", "Rate limit reached."),
    ],
)
def test_a_responses_stream_failure_follows_the_same_rule(code, message):
    log = {"request_id": "req-1"}
    errors = StreamErrors(log)
    event = response_failed(code, "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached. "
                                  "LiteLLM Retried: 2 times" if code != "server_error" else BROKEN)
    assert errors.feed(DELTA) is DELTA
    out = errors.feed(event)
    head, data = out.removesuffix(b"\n\n").split(b"\ndata: ")
    assert head == b"event: response.failed"
    expected = json.loads(event.split(b"\ndata: ")[1])
    expected["response"]["error"] = {"code": code, "message": message}
    assert orjson.loads(data) == expected
    assert log["upstream_error"] == event.split(b"\ndata: ")[1].removesuffix(b"\n\n").decode()


def test_a_responses_stream_failure_split_across_chunks_is_held_until_whole():
    errors = StreamErrors({"request_id": "req-1"})
    event = response_failed("server_error", BROKEN)
    assert errors.feed(DELTA + event[:10]) == DELTA
    assert errors.feed(event[10:50]) == b""
    out = errors.feed(event[50:])
    assert out.startswith(b"event: response.failed\ndata: ") and FAILED.encode() in out and b"litellm." not in out
