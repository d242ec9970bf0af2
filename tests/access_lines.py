"""The access lines a gateway in this process writes, captured as the production formatter makes them."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterator

import orjson

from gateway.ops.accesslog import ACCESS_LOGGER
from gateway.ops.logs import JsonFormatter


class AccessLines:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [orjson.loads(line) for line in self.text().splitlines()]

    def of(self, request_id: str) -> list[dict]:
        return [line for line in self.lines() if line.get("request_id") == request_id]


@contextlib.contextmanager
def access_lines() -> Iterator[AccessLines]:
    """A handler on the access logger (at INFO, as logs.configure() sets it) while the block runs."""
    captured = AccessLines()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
