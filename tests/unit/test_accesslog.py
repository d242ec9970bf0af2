"""The access log's lines and when they are written."""

import asyncio

import orjson
import pytest

from gateway.ops.accesslog import AccessLog

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
    log = AccessLog(write=written.append, buffer_lines=10)
    while not written:
        log.record(FIELDS)
    assert written[0].count("\n") == 10  # at the line that filled it


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


async def test_every_line_of_a_batch_is_redacted():
    written: list[str] = []
    log = AccessLog(write=written.append)
    for n in range(3):
        log.record({**FIELDS, "model": f"sk-live-{n}123456789abcdef"})
    log.flush()
    assert [orjson.loads(line)["model"] for line in written[0].splitlines()] == ["sk-live..."] * 3


async def test_each_line_has_the_time_it_was_recorded(monkeypatch):
    written: list[str] = []
    log = AccessLog(write=written.append)
    times = iter([1_700_000_000.5, 1_700_000_000.75, 1_700_000_001.25])
    monkeypatch.setattr("gateway.ops.accesslog.time.time", lambda: next(times))
    for _ in range(3):
        log.record(FIELDS)
    monkeypatch.undo()
    log.flush()
    stamps = [orjson.loads(line)["ts"] for line in written[0].splitlines()]
    assert stamps == ["2023-11-14T22:13:20.500Z", "2023-11-14T22:13:20.750Z", "2023-11-14T22:13:21.250Z"]
