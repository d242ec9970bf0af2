"""The access log: one JSON line per proxied request, a `logging` record like every other line.

    {"ts": "...Z", "level": "info", "logger": "maas_gateway.access", "msg": "request", "pid": 7,
     "request_id": "...", "route": "/v1/chat/completions", "key_prefix": "sk-abcd", ...}

The request's fields ride on the record (`extra={"fields": ...}`); gateway/ops/logs.py's
JsonFormatter makes the line and redacts it, and the root handler writes it when the
request is answered (`logging.access_log: false` turns the lines off). The logger is at
INFO whatever `logging.level` says (logs.configure): the level is for the other lines.

It was a hand-built batch (lines kept in memory, made and written every 0.25 s or 64
lines) until measured: it paid less than the 3% of a request it had to
(docs/performance.md, "Hand-built mechanisms, measured").
"""

from __future__ import annotations

import logging
from typing import Any

ACCESS_LOGGER = "maas_gateway.access"
_LOG = logging.getLogger(ACCESS_LOGGER)


def log_request(fields: dict[str, Any]) -> None:
    """One request's line: `fields` after the line's own ts, level, logger, msg and pid."""
    _LOG.info("request", extra={"fields": fields})
