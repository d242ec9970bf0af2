"""policies/access.py: key validity (always enforced) and model access (governed by the mode)."""

from __future__ import annotations

import itertools
from types import MappingProxyType

import pytest

from policies.access import (
    access_problem,
    decide,
    key_lapse,
    key_problem,
    live_models,
    model_problem,
    subscription_lapse,
    usable_models,
)
from policies.records import (
    ALLOW,
    SUBSCRIPTION_STATUSES,
    Allow,
    Code,
    Deny,
    KeyRecord,
    Mode,
    RequestFacts,
    SubscriptionRecord,
)

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0
MODEL = "gpt-4o"


def key(models=(MODEL,), subscriptions=None, **fields) -> KeyRecord:
    if subscriptions is None:
        subscriptions = {MODEL: "active"}
    subs = {
        m: s if isinstance(s, SubscriptionRecord) else SubscriptionRecord(m, s) for m, s in subscriptions.items()
    }
    return KeyRecord(key_id="k1", user_id="u1", models=tuple(models), subscriptions=subs, **fields)


def facts(*models: str) -> RequestFacts:
    return RequestFacts(models=models)


# -- key validity ------------------------------------------------------------------

KEY_STATES: dict[str, tuple[dict, Deny | None]] = {
    "active": ({}, None),
    "active-expires-later": ({"expires_at": NOW + 0.001}, None),
    "inactive": ({"is_active": False}, Deny(Code.API_KEY_REVOKED)),
    "revoked": ({"revoked_at": NOW - 60}, Deny(Code.API_KEY_REVOKED)),
    "revoked-in-future": ({"revoked_at": NOW + 3600}, Deny(Code.API_KEY_REVOKED)),  # any revocation counts
    "expired": ({"expires_at": NOW - 1}, Deny(Code.API_KEY_EXPIRED)),
    "expires-exactly-now": ({"expires_at": NOW}, Deny(Code.API_KEY_EXPIRED)),
    "user-inactive": ({"user_active": False}, Deny(Code.USER_INACTIVE)),
    # several problems: revoked wins over expired wins over user inactive
    "revoked-and-expired": ({"revoked_at": NOW, "expires_at": NOW - 1}, Deny(Code.API_KEY_REVOKED)),
    "inactive-and-user-inactive": ({"is_active": False, "user_active": False}, Deny(Code.API_KEY_REVOKED)),
    "expired-and-user-inactive": ({"expires_at": NOW - 1, "user_active": False}, Deny(Code.API_KEY_EXPIRED)),
}


@pytest.mark.parametrize(("fields", "expected"), list(KEY_STATES.values()), ids=list(KEY_STATES))
def test_key_problem(fields: dict, expected: Deny | None) -> None:
    assert key_problem(key(**fields), NOW) == expected


# -- the whole matrix: subscription status x key state x mode ------------------------

STATUSES = ["active", "suspended", "cancelled", "expired", "inactive", "pending", "denied"]


def test_statuses_are_litemaas_statuses() -> None:
    assert set(STATUSES) == SUBSCRIPTION_STATUSES


def _expected(status: str, key_deny: Deny | None, mode: Mode):
    if key_deny is not None:
        return key_deny  # key validity is enforced in every mode
    if mode is Mode.OFF or status == "active":
        return ALLOW
    denial = Deny(Code.SUBSCRIPTION_INACTIVE, MODEL, status)
    return Allow(shadowed=denial) if mode is Mode.SHADOW else denial


MATRIX = [
    pytest.param(status, fields, mode, _expected(status, deny, mode), id=f"{status}-{state}-{mode.value}")
    for status, (state, (fields, deny)), mode in itertools.product(STATUSES, KEY_STATES.items(), Mode)
]


@pytest.mark.parametrize(("status", "fields", "mode", "expected"), MATRIX)
def test_decide_matrix(status: str, fields: dict, mode: Mode, expected) -> None:
    record = key(subscriptions={MODEL: status}, **fields)
    assert decide(record, facts(MODEL), NOW, mode) == expected


@pytest.mark.parametrize("status", STATUSES + ["ACTIVE", "Active", "", "unknown"])
def test_model_problem_per_status(status: str) -> None:
    expected = None if status == "active" else Deny(Code.SUBSCRIPTION_INACTIVE, MODEL, status)
    assert model_problem(key(subscriptions={MODEL: status}), MODEL, NOW) == expected


# -- subscription expiry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        (None, None),
        (NOW + 1, None),
        (NOW + 0.000_1, None),
        (NOW, Deny(Code.SUBSCRIPTION_INACTIVE, MODEL, "expired")),
        (NOW - 1, Deny(Code.SUBSCRIPTION_INACTIVE, MODEL, "expired")),
    ],
    ids=["never", "later", "just-later", "exactly-now", "past"],
)
def test_active_subscription_expiry(expires_at, expected) -> None:
    record = key(subscriptions={MODEL: SubscriptionRecord(MODEL, "active", expires_at)})
    assert model_problem(record, MODEL, NOW) == expected
    assert decide(record, facts(MODEL), NOW, Mode.ENFORCE) == (expected or ALLOW)
    assert decide(record, facts(MODEL), NOW, Mode.SHADOW) == Allow(shadowed=expected)
    assert decide(record, facts(MODEL), NOW, Mode.OFF) == ALLOW


def test_inactive_status_wins_over_expiry() -> None:
    record = key(subscriptions={MODEL: SubscriptionRecord(MODEL, "suspended", NOW - 1)})
    assert model_problem(record, MODEL, NOW) == Deny(Code.SUBSCRIPTION_INACTIVE, MODEL, "suspended")


# -- which models a key lists, wildcards ----------------------------------------------

WILDCARD_SUBS = {
    "openai/gpt-4o": "active",
    "openai/eu/gpt-4o": "active",
    "openai/o1": "cancelled",
    "openaiz/x": "active",
    "openai": "active",
    "openai/*": "active",  # a row named like the pattern itself grants nothing by that name
    "anthropic/claude": "active",
    "gpt-4o": "active",
}


@pytest.mark.parametrize(
    ("models", "model", "expected"),
    [
        (("gpt-4o",), "gpt-4o", None),
        (("gpt-4o",), "gpt-4o-mini", Deny(Code.MODEL_ACCESS_DENIED, "gpt-4o-mini")),
        ((), "gpt-4o", Deny(Code.MODEL_ACCESS_DENIED, "gpt-4o")),
        # active subscription alone is not enough: the key must list the model
        (("openai/*",), "anthropic/claude", Deny(Code.MODEL_ACCESS_DENIED, "anthropic/claude")),
        (("openai/*",), "gpt-4o", Deny(Code.MODEL_ACCESS_DENIED, "gpt-4o")),
        # a pattern grants matched models with an active subscription
        (("openai/*",), "openai/gpt-4o", None),
        (("openai/*",), "openai/eu/gpt-4o", None),
        (("openai/*",), "openai/o1", Deny(Code.SUBSCRIPTION_INACTIVE, "openai/o1", "cancelled")),
        (("openai/*",), "openai/new-model", Deny(Code.MODEL_ACCESS_DENIED, "openai/new-model", "no subscription")),
        # ... on a segment boundary only
        (("openai/*",), "openai", Deny(Code.MODEL_ACCESS_DENIED, "openai")),
        (("openai/*",), "openaiz/x", Deny(Code.MODEL_ACCESS_DENIED, "openaiz/x")),
        (("openai/*",), "openai/", Deny(Code.MODEL_ACCESS_DENIED, "openai/")),
        # pattern entries never match literally, even with a subscription row of that name
        (("openai/*",), "openai/*", Deny(Code.MODEL_ACCESS_DENIED, "openai/*")),
        # "*" grants every model with an active subscription, and nothing else
        (("*",), "anthropic/claude", None),
        (("*",), "gpt-4o", None),
        (("*",), "openai/o1", Deny(Code.SUBSCRIPTION_INACTIVE, "openai/o1", "cancelled")),
        (("*",), "mistral/large", Deny(Code.MODEL_ACCESS_DENIED, "mistral/large", "no subscription")),
        # exact listing without a subscription row
        (("mistral/large",), "mistral/large", Deny(Code.MODEL_ACCESS_DENIED, "mistral/large", "no subscription")),
    ],
    ids=lambda v: repr(v) if not isinstance(v, Deny) else v.code.value,
)
def test_model_problem_listing_and_wildcards(models, model: str, expected: Deny | None) -> None:
    assert model_problem(key(models=models, subscriptions=WILDCARD_SUBS), model, NOW) == expected


# -- requests that reach several models (fallbacks) ----------------------------------

MULTI = key(
    models=("a", "b", "openai/*"),
    subscriptions={"a": "active", "b": "suspended", "openai/x": "active", "c": "active"},
)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ((), None),
        (("a",), None),
        (("a", "openai/x"), None),
        (("a", "b"), Deny(Code.SUBSCRIPTION_INACTIVE, "b", "suspended")),
        (("a", "c"), Deny(Code.MODEL_ACCESS_DENIED, "c")),
        (("c", "b"), Deny(Code.MODEL_ACCESS_DENIED, "c")),  # the first problem is reported
        (("b", "c"), Deny(Code.SUBSCRIPTION_INACTIVE, "b", "suspended")),
        (("a", "openai/y"), Deny(Code.MODEL_ACCESS_DENIED, "openai/y", "no subscription")),
    ],
    ids=["none", "one", "two-ok", "fallback-suspended", "fallback-unlisted", "first-wins", "first-wins-2", "fallback-no-sub"],
)
def test_every_model_of_a_request_is_checked(models, expected: Deny | None) -> None:
    assert access_problem(MULTI, facts(*models), NOW) == expected
    assert decide(MULTI, facts(*models), NOW, Mode.ENFORCE) == (expected or ALLOW)
    assert decide(MULTI, facts(*models), NOW, Mode.SHADOW) == Allow(shadowed=expected)
    assert decide(MULTI, facts(*models), NOW, Mode.OFF) == ALLOW


def test_request_without_models_is_allowed_for_a_valid_key_only() -> None:
    assert decide(key(), facts(), NOW, Mode.ENFORCE) == ALLOW
    assert decide(key(revoked_at=NOW), facts(), NOW, Mode.ENFORCE) == Deny(Code.API_KEY_REVOKED)


# -- usable_models (GET /v1/models) ---------------------------------------------------

CANDIDATES = ["gpt-4o", "openai/gpt-4o", "openai/o1", "anthropic/claude", "openai/new", "openaiz/x"]


@pytest.mark.parametrize(
    ("fields", "mode", "expected"),
    [
        ({}, Mode.ENFORCE, ["gpt-4o", "openai/gpt-4o"]),
        ({}, Mode.SHADOW, CANDIDATES),
        ({}, Mode.OFF, CANDIDATES),
        *[
            pytest.param(fields, mode, [], id=f"{state}-{mode.value}")
            for state, (fields, deny) in KEY_STATES.items()
            if deny is not None
            for mode in Mode
        ],
    ],
    ids=lambda v: v.value if isinstance(v, Mode) else None,
)
def test_usable_models(fields: dict, mode: Mode, expected: list[str]) -> None:
    record = key(
        models=("gpt-4o", "openai/*"),
        subscriptions={
            "gpt-4o": "active",
            "openai/gpt-4o": "active",
            "openai/o1": "pending",
            "anthropic/claude": "active",
            "openaiz/x": "active",
        },
        **fields,
    )
    assert usable_models(record, iter(CANDIDATES), NOW, mode) == expected


# -- records -------------------------------------------------------------------------


def test_key_record_subscriptions_are_a_frozen_copy() -> None:
    source = {MODEL: SubscriptionRecord(MODEL, "active")}
    record = KeyRecord("k", "u", models=(MODEL,), subscriptions=source)
    source[MODEL] = SubscriptionRecord(MODEL, "cancelled")
    source["other"] = SubscriptionRecord("other", "active")
    assert isinstance(record.subscriptions, MappingProxyType)
    assert dict(record.subscriptions) == {MODEL: SubscriptionRecord(MODEL, "active")}
    with pytest.raises(TypeError):
        record.subscriptions["x"] = SubscriptionRecord("x", "active")  # type: ignore[index]
    assert decide(record, facts(MODEL), NOW, Mode.ENFORCE) == ALLOW


def test_mode_and_code_values_are_the_contract() -> None:
    assert {m.value for m in Mode} == {"enforce", "shadow", "off"}
    assert {c.value for c in Code} == {c.name for c in Code}


# -- the two rules other modules apply: written once here ----------------------------------


@pytest.mark.parametrize(
    ("status", "expires_at", "expected"),
    [("active", None, None), ("active", NOW + 0.001, None), ("active", NOW, "expired"), ("active", NOW - 1, "expired"),
     ("suspended", None, "suspended"), ("pending", NOW + 60, "pending"), ("cancelled", NOW - 1, "cancelled"),
     ("Active", None, "Active")],
)
def test_subscription_lapse(status: str, expires_at: float | None, expected: str | None) -> None:
    assert subscription_lapse(status, expires_at, NOW) == expected
    record = key(subscriptions={MODEL: SubscriptionRecord(MODEL, status, expires_at)})
    expected_problem = None if expected is None else Deny(Code.SUBSCRIPTION_INACTIVE, MODEL, expected)
    assert model_problem(record, MODEL, NOW) == expected_problem  # decide() applies the same rule
    assert list(live_models(record.subscriptions.values(), NOW)) == ([MODEL] if expected is None else [])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, None), ({"revoked_at": NOW + 60}, "revoked"), ({"is_active": False}, "inactive"),
     ({"expires_at": NOW}, "expired"), ({"expires_at": NOW + 0.001}, None),
     ({"revoked_at": NOW, "is_active": False, "expires_at": NOW - 1}, "revoked"),
     ({"is_active": False, "expires_at": NOW - 1}, "inactive")],
)
def test_key_lapse(fields: dict, expected: str | None) -> None:
    record = key(**fields)
    assert key_lapse(record.is_active, record.revoked_at, record.expires_at, NOW) == expected
    denial = {None: None, "revoked": Deny(Code.API_KEY_REVOKED), "inactive": Deny(Code.API_KEY_REVOKED),
              "expired": Deny(Code.API_KEY_EXPIRED)}[expected]
    assert key_problem(record, NOW) == denial
