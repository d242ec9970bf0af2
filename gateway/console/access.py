"""What "My keys" shows per key and per model, decided by the proxy's own policy code.

key_access(key, subscriptions, now) turns a key as Accounts.list_keys shows it and the
user's subscriptions into a KeyRecord and asks policies.access (key_problem, model_problem)
exactly what the proxy would ask, so the page can never disagree with the gateway.
No I/O, no clock: `now` is POSIX seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from gateway.errors import MESSAGES
from policies.access import key_problem, model_problem
from policies.matching import is_pattern, matches
from policies.records import Code, KeyRecord, SubscriptionRecord


@dataclass(frozen=True)
class ModelAccess:
    model: str
    state: str  # allowed | suspended | pending | expired | cancelled | inactive | denied | none | not on key
    allowed: bool
    message: str  # the words a client would read in the refusal; "" when allowed


@dataclass(frozen=True)
class KeyAccess:
    key: Mapping[str, Any]  # Accounts' key view
    status: str  # active | revoked | expired | inactive
    problem: str  # why no call works with this key (the proxy's words), or ""
    models: tuple[ModelAccess, ...]


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


def subscription_records(rows: Iterable[Mapping[str, Any]]) -> dict[str, SubscriptionRecord]:
    return {r["model_id"]: SubscriptionRecord(r["model_id"], r["status"], _seconds(r["expires_at"])) for r in rows}


def key_record(key: Mapping[str, Any], subscriptions: Mapping[str, SubscriptionRecord], user_active: bool) -> KeyRecord:
    return KeyRecord(
        key_id=key["id"], user_id=key["user_id"], is_active=key["is_active"],
        revoked_at=_seconds(key["revoked_at"]), expires_at=_seconds(key["expires_at"]), user_active=user_active,
        models=tuple(key["models"]), subscriptions=subscriptions,
    )


def _model_access(record: KeyRecord, model: str, now: float) -> ModelAccess:
    problem = model_problem(record, model, now)
    if problem is None:
        return ModelAccess(model, "allowed", True, "")
    if problem.code is Code.SUBSCRIPTION_INACTIVE:
        state = problem.detail or "inactive"
    elif problem.detail == "no subscription":
        state = "none"
    else:
        state = "not on key"
    return ModelAccess(model, state, False, MESSAGES[problem.code.value])


def key_access(key: Mapping[str, Any], subscriptions: Mapping[str, SubscriptionRecord], user_active: bool,
               now: float) -> KeyAccess:
    record = key_record(key, subscriptions, user_active)
    problem = key_problem(record, now)
    status = {Code.API_KEY_REVOKED: "revoked" if record.revoked_at is not None else "inactive",
              Code.API_KEY_EXPIRED: "expired"}.get(problem.code, "active") if problem else "active"
    # A wildcard entry ("openai/*") reaches the subscribed models it matches: show those.
    names: list[str] = []
    for entry in record.models:
        found = [m for m in sorted(subscriptions) if matches(entry, m)] if is_pattern(entry) else [entry]
        names.extend(m for m in found if m not in names)
    return KeyAccess(key, status, MESSAGES[problem.code.value] if problem else "",
                     tuple(_model_access(record, m, now) for m in names))
