"""What account data must look like, checked by the service layer so the admin API, the
CLI and the console answer alike: ids, emails, model names, statuses, expiry in the future,
and whether a user's subscriptions cover the models a key asks for. Failures are 422
INVALID_REQUEST naming the field (or 409 SUBSCRIPTION_REQUIRED naming the models).
Types and ranges of request bodies (no negative limit, a date-time that parses) are the
body models' (gateway/admin/schema.py), which the admin API and the CLI both go through.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterable

from gateway.errors import AdminError
from policies import periods
from policies.access import subscription_lapse
from policies.matching import is_pattern, matches
from policies.records import SUBSCRIPTION_STATUSES

USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+:-]{0,127}")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
MODEL_ID = re.compile(r"[^\s*]{1,255}")  # LiteLLM model names: "gpt-4o", "openai/gpt-4o"
MODEL_ENTRY = re.compile(r"\*|[^\s*]{1,253}/\*|[^\s*]{1,255}")  # a key may also hold "openai/*" or "*"


def invalid(message: str, param: str | None) -> AdminError:
    return AdminError(422, "INVALID_REQUEST", message, param=param)


def check(pattern: re.Pattern, value: str, param: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise invalid(f"{param}: {value[:80]!r} is not a valid {what}.", param)
    return value


def check_duration(value: str | None, name: str = "budget_duration") -> str | None:
    """A quota or budget period as LiteLLM writes budget_duration (policies/periods.py), longer than 0
    and at most 100 years."""
    if value is None:
        return None
    try:
        duration = periods.parse(value)
    except ValueError:
        duration = None
    if duration is None or not duration.usable:
        raise invalid(f"{name}: expected a period as LiteLLM writes budget_duration, such as 30s, 1h, 1d, 7d, 30d, "
                      f"1mo or monthly, of at most 100 years, got {value!r}.", name)
    return value


def check_status(status: str) -> str:
    if status not in SUBSCRIPTION_STATUSES:
        raise invalid(f"status: expected one of {', '.join(sorted(SUBSCRIPTION_STATUSES))}, got {status!r}.", "status")
    return status


def future_expiry(expires_at: datetime | str | None) -> datetime | None:
    """An ISO 8601 string or datetime in the future (UTC when naive), or None."""
    if expires_at is None:
        return None
    if isinstance(expires_at, str):
        try:
            expires_at = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            raise invalid(f"expires_at: {expires_at[:40]!r} is not an ISO 8601 date-time.", "expires_at") from None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=timezone.utc)
    if expires_at <= datetime.now(timezone.utc):
        raise invalid("expires_at: must be in the future.", "expires_at")
    return expires_at


def clean_models(models: Iterable[str]) -> list[str]:
    cleaned = list(dict.fromkeys(models))
    if not cleaned:
        raise invalid("models: name at least one model.", "models")
    for model in cleaned:
        check(MODEL_ENTRY, model, "models", "model name or pattern")
    return cleaned


def covered(entry: str, live: Iterable[str]) -> bool:
    """True when a key's model entry (a name or a pattern) is granted by the live subscriptions."""
    return any(matches(entry, m) for m in live) if is_pattern(entry) else entry in live


def unsubscribed(models: list[str], subscriptions: Iterable[Any], now: float) -> list[str]:
    """The requested models (or patterns) no active, unexpired subscription of the user covers."""
    live = live_model_ids(subscriptions, now)
    return [m for m in models if not covered(m, live)]


def epoch(value: datetime | None) -> float | None:
    """A row's timestamp as the POSIX seconds policies/ compare."""
    return None if value is None else value.timestamp()


def live_model_ids(subscriptions: Iterable[Any], now: float) -> list[str]:
    """The model ids of subscription rows (model_id, status, expires_at) that grant access now:
    policies.access.subscription_lapse is the rule."""
    return [s["model_id"] for s in subscriptions if subscription_lapse(s["status"], epoch(s["expires_at"]), now) is None]


def require_subscribed(models: list[str], subscriptions: Iterable[Any], now: float) -> None:
    missing = unsubscribed(models, subscriptions, now)
    if missing:
        raise AdminError(
            409, "SUBSCRIPTION_REQUIRED",
            f"No active subscription for: {', '.join(missing)}. Subscribe the user to these models first.",
            param="models",
        )
