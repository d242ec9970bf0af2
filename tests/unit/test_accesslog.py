"""The access log's lines: the JSON shape of every log line, redacted, written when the request is logged."""

import io
import logging

import orjson
import pytest

from gateway.ops import logs
from gateway.ops.accesslog import ACCESS_LOGGER, log_request
from tests.access_lines import access_lines

pytestmark = pytest.mark.unit

FIELDS = {"request_id": "r1", "route": "/v1/chat/completions", "key_prefix": "sk-abcd", "status": 200, "code": None}


def test_lines_are_the_json_shape_of_every_log_line_and_written_at_once():
    with access_lines() as lines:
        log_request(FIELDS)
        assert [line["request_id"] for line in lines.lines()] == ["r1"]  # no batch: written when logged
        log_request({**FIELDS, "request_id": "r2"})
    parsed = lines.lines()
    assert [line["request_id"] for line in parsed] == ["r1", "r2"]
    for line in parsed:
        assert list(line)[:5] == ["ts", "level", "logger", "msg", "pid"]
        assert (line["level"], line["logger"], line["msg"]) == ("info", "maas_gateway.access", "request")
        assert line["ts"].endswith("Z") and len(line["ts"]) == len("2026-11-25T21:00:00.123Z")
        assert {k: line[k] for k in FIELDS} == {**FIELDS, "request_id": line["request_id"]}


def test_key_shaped_values_are_cut_to_their_prefix():
    secret = "sk-live-0123456789abcdef0123"
    with access_lines() as lines:
        log_request({**FIELDS, "model": secret, "request_id": "Bearer abcdefghijklmnop"})
    assert secret not in lines.text() and "abcdefghijklmnop" not in lines.text()
    [line] = lines.lines()
    assert line["model"] == "sk-live...", line
    assert line["request_id"] == "Bearer abcdefg..."


def test_a_line_without_fields_is_still_json():
    with access_lines() as lines:
        log_request({})
    assert list(lines.lines()[0]) == ["ts", "level", "logger", "msg", "pid"]


def test_each_line_has_the_time_it_was_logged():
    record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, "request", None, None)
    record.created, record.msecs = 1_700_000_000.75, 750.0
    record.fields = FIELDS  # type: ignore[attr-defined]
    assert orjson.loads(logs.JsonFormatter().format(record))["ts"] == "2023-11-14T22:13:20.750Z"


def test_lines_are_written_whatever_the_log_level(monkeypatch):
    stream = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    access = logging.getLogger(ACCESS_LOGGER)
    monkeypatch.setattr(access, "level", access.level)
    monkeypatch.setattr("sys.stderr", stream)
    for name in ("_srcfile", "logThreads", "logMultiprocessing"):  # configure() sets them for the process
        monkeypatch.setattr(logging, name, getattr(logging, name))
    logs.configure("error")  # the operator's level: errors only
    logging.getLogger("maas_gateway.app").warning("not written at level error")
    log_request(FIELDS)
    [line] = [orjson.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["logger"], line["request_id"]) == ("maas_gateway.access", "r1")
