"""decide(): may this key call these models now?

    key validity   revoked -> inactive -> expired -> user inactive     (401 / 403)
    each model     listed on the key?        no -> MODEL_ACCESS_DENIED  (403)
                   active subscription?      no -> SUBSCRIPTION_INACTIVE or MODEL_ACCESS_DENIED

A key that is revoked, expired or whose user is inactive is refused in every
mode: that is authentication. The mode governs model access only: ENFORCE denies,
SHADOW allows and carries the denial for the record, OFF allows without looking.

The two rules every other place applies too (the admin API, LiteLLM's mirror of a key, the
console) are written once here: key_lapse (why a key no longer works) and subscription_lapse
("a subscription grants access when active and not expired"). Callers holding database rows
pass the timestamps as POSIX seconds.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from policies.matching import listed
from policies.records import ALLOW, Allow, Code, Decision, Deny, KeyRecord, Mode, RequestFacts, SubscriptionRecord

ACTIVE = "active"  # the one subscription status that grants access


def subscription_lapse(status: str, expires_at: float | None, now: float) -> str | None:
    """Why a subscription grants nothing now (its status, or "expired"), or None: it grants access
    when active and not expired. A status other than active wins over the expiry."""
    if status != ACTIVE:
        return status
    if expires_at is not None and expires_at <= now:
        return "expired"
    return None


def live_models(subscriptions: Iterable[SubscriptionRecord], now: float) -> Iterator[str]:
    """The model ids of the subscriptions that grant access now."""
    return (s.model_id for s in subscriptions if subscription_lapse(s.status, s.expires_at, now) is None)


def key_lapse(is_active: bool, revoked_at: float | None, expires_at: float | None, now: float) -> str | None:
    """Why the key itself no longer works ("revoked", "inactive", "expired"), or None."""
    if revoked_at is not None:
        return "revoked"
    if not is_active:
        return "inactive"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return None


_KEY_DENIALS = {"revoked": Deny(Code.API_KEY_REVOKED), "inactive": Deny(Code.API_KEY_REVOKED),
                "expired": Deny(Code.API_KEY_EXPIRED)}


def key_problem(key: KeyRecord, now: float) -> Deny | None:
    """Why the key itself cannot be used, or None."""
    lapse = key_lapse(key.is_active, key.revoked_at, key.expires_at, now)
    if lapse is not None:
        return _KEY_DENIALS[lapse]
    if not key.user_active:
        return Deny(Code.USER_INACTIVE)
    return None


def model_problem(key: KeyRecord, model: str, now: float) -> Deny | None:
    """Why the key may not call this model, or None."""
    if not listed(key.models, model):
        return Deny(Code.MODEL_ACCESS_DENIED, model)
    subscription = key.subscriptions.get(model)
    if subscription is None:
        return Deny(Code.MODEL_ACCESS_DENIED, model, "no subscription")
    lapse = subscription_lapse(subscription.status, subscription.expires_at, now)
    if lapse is not None:
        return Deny(Code.SUBSCRIPTION_INACTIVE, model, lapse)
    return None


def access_problem(key: KeyRecord, facts: RequestFacts, now: float) -> Deny | None:
    """The first model of the request this key may not call, or None."""
    for model in facts.models:
        problem = model_problem(key, model, now)
        if problem is not None:
            return problem
    return None


# The members as plain names: `Mode.OFF` is a ~100 ns class-attribute lookup each time.
_OFF, _SHADOW = Mode.OFF, Mode.SHADOW


def decide(key: KeyRecord, facts: RequestFacts, now: float, mode: Mode) -> Decision:
    """Allow or Deny one request; `now` is POSIX seconds."""
    problem = key_problem(key, now)
    if problem is not None:
        return problem
    if mode is _OFF:
        return ALLOW
    problem = access_problem(key, facts, now)
    if problem is None:
        return ALLOW
    return Allow(shadowed=problem) if mode is _SHADOW else problem


def usable_models(key: KeyRecord, candidates: Iterable[str], now: float, mode: Mode) -> list[str]:
    """The subset of candidate model names this key may call (for GET /v1/models)."""
    if key_problem(key, now) is not None:
        return []
    if mode is not Mode.ENFORCE:
        return list(candidates)
    return [model for model in candidates if model_problem(key, model, now) is None]
