"""Unexpected exceptions: logged with the request id, answered 500 INTERNAL_ERROR.

Every handler ends with this net (the raw proxy handlers, the dispatch in front of
Starlette, Starlette's own routes), so a bug never reaches a client as uvicorn's or
Starlette's plain-text "Internal Server Error": the client gets the OpenAI shape, with
the request id it can report, and the log has the traceback under the same id.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Awaitable, Callable

from gateway.errors import InternalError

log = logging.getLogger("maas_gateway.failures")

Send = Callable[[dict], Awaitable[None]]


def log_unexpected(exc: BaseException, request_id: str, route: str) -> None:
    log.error("unexpected error", exc_info=exc, extra={"fields": {"request_id": request_id, "route": route}})


async def answer_unexpected(send: Send, exc: BaseException, request_id: str, id_header: bytes, route: str) -> None:
    """Log `exc`, then answer 500 if the response has not started (else the connection just ends)."""
    log_unexpected(exc, request_id, route)
    error = InternalError(detail=f"request id: {request_id}")
    body = error.body()
    headers = error.headers()
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((id_header, request_id.encode()))
    # A response already under way cannot change its status: the server refuses the second start.
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

