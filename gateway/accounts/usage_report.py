"""Usage as the admin API and the CLI list it: usage_daily rows, filtered and paged.

    usage_page(pool, user_id?, key_id?, model?, from?, to?, limit, cursor?)
        -> {"data": [{day, key_id, user_id, model_id, requests, prompt_tokens, completion_tokens,
                      spend}, ...], "next_cursor": str | None}
    key_totals(pool, user_id?, key_id?, model?, from?, to?)
        -> {key_id: {requests, prompt_tokens, completion_tokens, spend}}   (the console's My keys)

Rows come in (day, key_id, model_id) order; the cursor is the last row's place, opaque to clients.
`from` and `to` are UTC days (YYYY-MM-DD), both included.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

import orjson

from gateway.accounts.validation import invalid

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def _day(text: str, param: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise invalid(f"{param}: expected a UTC day as YYYY-MM-DD, got {text[:40]!r}.", param) from None


def encode_cursor(day: date, key_id: str, model_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([day.isoformat(), key_id, model_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[date, str, str]:
    try:
        day, key_id, model_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return date.fromisoformat(day), str(key_id), str(model_id)
    except (ValueError, TypeError):
        raise invalid("cursor: not a cursor this API gave.", "cursor") from None


def page_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid(f"limit: expected an integer from 1 to {MAX_LIMIT}, got {text[:20]!r}.", "limit")
    return int(text)


def _filters(*, user_id: str | None = None, key_id: str | None = None, model: str | None = None,
             from_: str | None = None, to: str | None = None, cursor: str | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") and its arguments, for usage_daily."""
    where, args = [], []  # type: ignore[var-annotated]

    def add(condition: str, *values: Any) -> None:
        args.extend(values)
        where.append(condition.format(*(f"${len(args) - len(values) + i + 1}" for i in range(len(values)))))

    if user_id:
        add("user_id = {}", user_id)
    if key_id:
        add("key_id = {}", key_id)
    if model:
        add("model_id = {}", model)
    if from_:
        add("day >= {}", _day(from_, "from"))
    if to:
        add("day <= {}", _day(to, "to"))
    if cursor:
        add("(day, key_id, model_id) > ({}, {}, {})", *decode_cursor(cursor))
    return ("WHERE " + " AND ".join(where) if where else ""), args


async def usage_page(pool: Any, *, user_id: str | None = None, key_id: str | None = None, model: str | None = None,
                     from_: str | None = None, to: str | None = None, limit: int = DEFAULT_LIMIT,
                     cursor: str | None = None) -> dict:
    where, args = _filters(user_id=user_id, key_id=key_id, model=model, from_=from_, to=to, cursor=cursor)
    sql = ("SELECT day, key_id, user_id, model_id, requests, prompt_tokens, completion_tokens, spend::float8 AS spend "
           f"FROM usage_daily {where} ORDER BY day, key_id, model_id LIMIT {limit + 1}")
    rows = await pool.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    data = [{**dict(r), "day": r["day"].isoformat()} for r in rows]
    last = rows[-1] if rows else None
    return {"data": data,
            "next_cursor": encode_cursor(last["day"], last["key_id"], last["model_id"]) if more and last else None}


async def key_totals(pool: Any, *, user_id: str | None = None, key_id: str | None = None, model: str | None = None,
                     from_: str | None = None, to: str | None = None) -> dict[str, dict]:
    """The same rows as usage_page, summed per key (all models, all days in range)."""
    where, args = _filters(user_id=user_id, key_id=key_id, model=model, from_=from_, to=to)
    rows = await pool.fetch(
        "SELECT key_id, sum(requests)::int8 AS requests, sum(prompt_tokens)::int8 AS prompt_tokens, "
        "sum(completion_tokens)::int8 AS completion_tokens, sum(spend)::float8 AS spend "
        f"FROM usage_daily {where} GROUP BY key_id", *args)
    return {r["key_id"]: {k: r[k] for k in ("requests", "prompt_tokens", "completion_tokens", "spend")} for r in rows}
