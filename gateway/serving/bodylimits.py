"""A JSON body's cost, bounded before it is parsed (OWASP API4: unrestricted resource use).

A 25 MiB body of tiny values (`[{},{},...]`, `[1.5,1.5,...]`) parses into millions of
Python objects: measured, 350-800 MiB of RSS for one request, 15-30x its size. Nesting
is no risk (orjson refuses depth over 1024); the count of values is. Every JSON value
beyond the first is announced by a `{`, a `[` or a `,`, so their count bounds the values
the parse makes. Counting them with bytes.count runs at memory speed (a few ms for
25 MiB) and allocates nothing; it also counts those inside strings, so it over-estimates,
which errs towards refusing a body that, to be refused, needs more of them than any
model's context holds (`server.max_json_elements`, default 500,000: a 2M-token prompt
of code has fewer).

A body shorter than the limit cannot reach it: the hot path's small bodies skip the count.
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError

def structural_count(body: bytes) -> int:
    """`{`, `[` and `,` bytes in `body`: an upper bound on the values its JSON holds, less one."""
    return body.count(b"{") + body.count(b"[") + body.count(b",")

def refuse_dense_json(body: bytes, limit: int) -> None:
    """400 INVALID_REQUEST when `body` may hold more than `limit` JSON values; call it before parsing."""
    if len(body) > limit and structural_count(body) > limit:
        raise InvalidRequestError(
            detail=f"the JSON body holds more than {limit} values ('{{', '[' and ',' counted); send fewer per request"
        )
