"""The access log's lines and when they are written."""

import asyncio

import orjson
import pytest

from gateway.accesslog import AccessLog

pytestmark = pytest.mark.unit

FIELDS = {"request_id": "r1", "route": "/v1/chat/completions", "key_prefix": "sk-abcd", "status": 200, "code": None}


async def test_lines_are_the_json_shape_of_every_log_line():
    written: list[str] = []
    log = AccessLog(write=written.append)
    log.record(FIELDS)
    log.record({**FIELDS, "request_id": "r2"})
    assert written == []  # batched
    log.flush()
    [text] = written
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2"]
    for line in lines:
        assert list(line)[:5] == ["ts", "level", "logger", "msg", "pid"]
        assert (line["level"], line["logger"], line["msg"]) == ("info", "maas_gateway.access", "request")
        assert line["ts"].endswith("Z") and len(line["ts"]) == len("2026-11-25T21:00:00.123Z")
        assert {k: line[k] for k in FIELDS} == {**FIELDS, "request_id": line["request_id"]}
    log.flush()
    assert len(written) == 1  # nothing waits: nothing written


async def test_key_shaped_values_are_cut_to_their_prefix():
    written: list[str] = []
    log = AccessLog(write=written.append)
    secret = "sk-live-0123456789abcdef0123"
    log.record({**FIELDS, "model": secret, "request_id": "Bearer abcdefghijklmnop"})
    log.flush()
    assert secret not in written[0] and "abcdefghijklmnop" not in written[0]
    line = orjson.loads(written[0])
    assert line["model"] == "sk-live...", line
    assert line["request_id"] == "Bearer abcdefg..."


async def test_lines_go_out_when_the_buffer_fills():
    written: list[str] = []
    log = AccessLog(write=written.append, buffer_bytes=1000)
    while not written:
        log.record(FIELDS)
    count = written[0].count("\n")
    assert 1000 <= len(written[0]) < 1000 + len(written[0]) / count + 1  # at the line that crossed it


async def test_lines_go_out_after_the_flush_interval():
    written: list[str] = []
    log = AccessLog(write=written.append, flush_seconds=0.01)
    log.record(FIELDS)
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(0.05, done.set_result, None)  # the timer runs on the loop, before this
    await done
    assert len(written) == 1 and orjson.loads(written[0])["request_id"] == "r1"


async def test_a_line_without_fields_is_still_json():
    written: list[str] = []
    log = AccessLog(write=written.append)
    log.record({})
    log.flush()
    assert list(orjson.loads(written[0])) == ["ts", "level", "logger", "msg", "pid"]
