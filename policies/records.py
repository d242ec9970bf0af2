"""The facts a decision is made on, and the decision itself.

Times are POSIX seconds (floats) so that the hot path compares numbers, never
datetimes; the I/O shell converts once when it loads a record.
"""

from __future__ import annotations

import enum
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import Mapping

from policies.limits import NO_LIMITS, Limits


class Mode(enum.Enum):
    """How the gateway acts on a denial."""

    ENFORCE = "enforce"  # deny
    SHADOW = "shadow"  # allow, but record what would have been denied
    OFF = "off"  # allow without looking (authentication still applies)


class Code(enum.Enum):
    """Why a request is refused; the values are the error codes clients see."""

    MISSING_API_KEY = "MISSING_API_KEY"
    INVALID_API_KEY = "INVALID_API_KEY"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    USER_INACTIVE = "USER_INACTIVE"
    MODEL_ACCESS_DENIED = "MODEL_ACCESS_DENIED"
    SUBSCRIPTION_INACTIVE = "SUBSCRIPTION_INACTIVE"
    INVALID_REQUEST = "INVALID_REQUEST"
    MODEL_REQUIRED = "MODEL_REQUIRED"


# Subscription statuses (LiteMaaS): only ACTIVE grants access.
SUBSCRIPTION_STATUSES = frozenset(
    {"active", "suspended", "cancelled", "expired", "inactive", "pending", "denied"}
)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    model_id: str
    status: str
    expires_at: float | None = None
    limits: Limits = NO_LIMITS  # quota_requests, quota_tokens, max_budget, budget_duration; LiteMaaS: rpm, tpm
    reset_at: float | None = None  # quota periods are months from here (None: calendar months, UTC)


EMPTY: Mapping = MappingProxyType({})  # one read-only empty mapping for every record that has nothing there


def _frozen(mapping: Mapping) -> Mapping:
    """A read-only copy; the shared EMPTY when there is nothing (most keys have no per-model limits:
    ~110 bytes each of the L1 cache's records)."""
    return MappingProxyType(dict(mapping)) if mapping else EMPTY


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything one decision needs about a key, loaded by one query.

    One is cached per key (gateway/store/keys.py): what can be had elsewhere is not kept here, such
    as the key's display prefix, which is its first 7 characters (gateway/store/keys.py key_prefix).
    """

    key_id: str
    user_id: str
    _: KW_ONLY
    is_active: bool = True
    revoked_at: float | None = None
    expires_at: float | None = None
    user_active: bool = True
    # api_key_models: exact model names and wildcard patterns such as "openai/*".
    models: tuple[str, ...] = ()
    # the user's subscriptions, by model id.
    subscriptions: Mapping[str, SubscriptionRecord] = field(default_factory=dict)
    limits: Limits = NO_LIMITS  # the key's rpm_limit, tpm_limit, max_parallel_requests; LiteMaaS: max_budget
    user_limits: Limits = NO_LIMITS  # the user's, and max_budget
    # the key's own limits per model (LiteMaaS's model_rpm_limit, model_tpm_limit, model_max_budget)
    model_limits: Mapping[str, Limits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subscriptions", _frozen(self.subscriptions))
        object.__setattr__(self, "model_limits", _frozen(self.model_limits))


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request asks for: every model name it could reach, the primary one first."""

    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Deny:
    code: Code
    model: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Allow:
    # In shadow mode, the denial that was not enforced; None when nothing was wrong.
    shadowed: Deny | None = None


Decision = Allow | Deny

ALLOW = Allow()
