"""gateway/console/access.py: what My keys shows per key and model is the proxy's decision."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.console.access import key_access, subscription_records

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0
PAST = datetime.fromtimestamp(NOW - 60, timezone.utc)
FUTURE = datetime.fromtimestamp(NOW + 60, timezone.utc)
INACTIVE = "Your subscription to this model is not active. Please check your subscription."
DENIED = "Your API key does not have access to this model. Please check your subscription."


def view(models, **fields):
    key = {"id": "k1", "user_id": "u1", "key_prefix": "sk-abcd", "is_active": True, "revoked_at": None,
           "expires_at": None, "models": models}
    key.update(fields)
    return key


SUBSCRIPTIONS = subscription_records([
    {"model_id": "gpt-4o", "status": "active", "expires_at": None},
    {"model_id": "llama-3-8b", "status": "suspended", "expires_at": None},
    {"model_id": "mistral", "status": "pending", "expires_at": None},
    {"model_id": "openai/gpt-4o-mini", "status": "active", "expires_at": PAST},
    {"model_id": "openai/o1", "status": "active", "expires_at": FUTURE},
])


def states(access):
    return [(m.model, m.state, m.allowed, m.message) for m in access.models]


def test_each_model_in_the_proxys_words():
    access = key_access(view(["gpt-4o", "llama-3-8b", "mistral", "openai/gpt-4o-mini", "claude"]), SUBSCRIPTIONS,
                        True, NOW)
    assert (access.status, access.problem) == ("active", "")
    assert states(access) == [
        ("gpt-4o", "allowed", True, ""),
        ("llama-3-8b", "suspended", False, INACTIVE),
        ("mistral", "pending", False, INACTIVE),
        ("openai/gpt-4o-mini", "expired", False, INACTIVE),
        ("claude", "none", False, DENIED),
    ]


def test_a_wildcard_shows_the_subscribed_models_it_reaches():
    access = key_access(view(["openai/*"]), SUBSCRIPTIONS, True, NOW)
    assert states(access) == [("openai/gpt-4o-mini", "expired", False, INACTIVE), ("openai/o1", "allowed", True, "")]


@pytest.mark.parametrize(("fields", "user_active", "status", "problem"), [
    ({"revoked_at": "2023-11-14T22:12:00+00:00", "is_active": False}, True, "revoked",
     "This API key has been revoked. Create a new key to continue."),
    ({"is_active": False}, True, "inactive", "This API key has been revoked. Create a new key to continue."),
    ({"expires_at": PAST.isoformat()}, True, "expired", "This API key has expired. Create a new key to continue."),
    ({}, False, "active", "Your account is deactivated. Contact your administrator."),
    ({"expires_at": FUTURE.isoformat()}, True, "active", ""),
])
def test_the_key_itself(fields, user_active, status, problem):
    access = key_access(view(["gpt-4o"], **fields), SUBSCRIPTIONS, user_active, NOW)
    assert (access.status, access.problem) == (status, problem)
