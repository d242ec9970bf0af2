"""Database rows as the admin API and the CLI show them: JSON-ready dicts.

Date-times are ISO 8601 in UTC, NUMERIC budgets are floats. A key's view never holds
the key nor its hash; only `create_key` adds the key, once.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from policies.access import key_lapse


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):  # LiteMaaS's ids
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _pick(row: Any, fields: tuple[str, ...]) -> dict:
    """The fields of a row; one its table lacks (LiteMaaS's have no users.sync_error) is null."""
    return {name: _plain(row.get(name)) for name in fields}


USER_FIELDS = (
    "id", "username", "email", "is_active", "max_budget", "tpm_limit", "rpm_limit", "max_parallel_requests",
    "budget_duration", "sync_status", "sync_error", "last_synced_at", "created_at", "updated_at",
)
MODEL_FIELDS = ("id", "name", "provider", "is_active", "input_cost_per_token", "output_cost_per_token", "created_at")
SUBSCRIPTION_FIELDS = ("id", "user_id", "model_id", "status", "expires_at", "quota_requests", "quota_tokens",
                       "max_budget", "budget_duration", "reset_at", "used_requests", "used_tokens", "created_at",
                       "updated_at")
KEY_FIELDS = (
    "id", "user_id", "name", "key_prefix", "models", "expires_at", "is_active", "revoked_at",
    "last_used_at", "sync_status", "rpm_limit", "tpm_limit", "max_parallel_requests", "created_at",
)


def user_view(row: Any) -> dict:
    return _pick(row, USER_FIELDS)


def model_view(row: Any) -> dict:
    return _pick(row, MODEL_FIELDS)


def subscription_view(row: Any) -> dict:
    return _pick(row, SUBSCRIPTION_FIELDS)


def key_status(row: Any, now: float) -> str:
    """revoked | inactive | expired | active: policies.access.key_lapse is the rule."""
    expires_at = row["expires_at"]
    lapse = key_lapse(row["is_active"], row["revoked_at"], None if expires_at is None else expires_at.timestamp(), now)
    return lapse or "active"


def key_view(row: Any) -> dict:
    view = _pick(row, KEY_FIELDS)
    view["models"] = list(row["models"])
    view["status"] = key_status(row, time.time())
    return view
