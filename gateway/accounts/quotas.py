"""Limits, quotas and prices as the admin API and the CLI set them (enforced by gateway/limits/limiter.py).

    KEY_LIMITS / USER_LIMITS / SUBSCRIPTION_LIMITS / MODEL_PRICES   the columns, LiteMaaS's names
    set_columns(conn, table, id, values)                           one UPDATE of the given columns

A limit set to null goes back to the default in config.yaml (`limits.defaults`); 0 allows nothing.
`budget_duration` is the period of budgets, as LiteLLM writes it (policies/periods.py); null: a
calendar month. Quotas count per calendar month, or per month from the subscription's reset_at.
The tables' triggers announce the change, so cached keys everywhere pick it up at once.
"""

from __future__ import annotations

from typing import Any

KEY_LIMITS = ("rpm_limit", "tpm_limit", "max_parallel_requests")
USER_LIMITS = (*KEY_LIMITS, "max_budget", "budget_duration")
SUBSCRIPTION_LIMITS = ("quota_requests", "quota_tokens", "max_budget", "reset_at", "budget_duration")
MODEL_PRICES = ("input_cost_per_token", "output_cost_per_token")

_TABLES = {"api_keys": KEY_LIMITS, "users": USER_LIMITS, "subscriptions": SUBSCRIPTION_LIMITS, "models": MODEL_PRICES}


def pick(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The entries of `values` named in `names` (None kept: it means "the default")."""
    return {name: values[name] for name in names if name in values}


async def set_columns(conn: Any, table: str, ident: str, values: dict[str, Any]) -> Any:
    """UPDATE `table` SET the `values` (only columns of _TABLES[table]) WHERE id; the row, or None."""
    allowed = _TABLES[table]
    names = [name for name in values if name in allowed]
    assert len(names) == len(values), sorted(set(values) - set(allowed))
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    touched = "" if table == "models" else ", updated_at = now()"
    return await conn.fetchrow(f"UPDATE {table} SET {assignments}{touched} WHERE id = $1 RETURNING *",
                               ident, *(values[n] for n in names))
