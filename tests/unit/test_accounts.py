"""The admin flows' pure parts: which models a key request lacks, what LiteLLM should hold
for a passthrough key, strict body validation, and the CLI's tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.admin import schema
from gateway.admin.cli import record, table
from gateway.errors import AdminError
from gateway.accounts.keymirror import litellm_key_state
from gateway.accounts.validation import future_expiry, live_model_ids, unsubscribed
from gateway.accounts.views import key_status
from policies.access import key_problem, model_problem
from policies.records import KeyRecord, SubscriptionRecord

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0


def sub(model: str, status: str = "active", expires_at: datetime | None = None) -> dict:
    return {"model_id": model, "status": status, "expires_at": expires_at}


def test_unsubscribed_names_models_without_an_active_unexpired_subscription():
    past = datetime.fromtimestamp(NOW - 1, timezone.utc)
    future = datetime.fromtimestamp(NOW + 60, timezone.utc)
    subs = [sub("a"), sub("b", "suspended"), sub("c", expires_at=past), sub("d", expires_at=future)]
    assert unsubscribed(["a", "b", "c", "d", "e"], subs, NOW) == ["b", "c", "e"]


STATUS_ROWS = [(status, offset) for status in ("active", "suspended", "pending", "cancelled", "expired")
               for offset in (None, -60.0, 0.0, 0.001, 60.0)]


def test_database_rows_and_the_request_path_apply_one_subscription_rule():
    """The admin API and the console read rows (datetimes); the proxy reads KeyRecords: same verdicts."""
    rows = [sub(f"m{i}", status, None if offset is None else datetime.fromtimestamp(NOW + offset, timezone.utc))
            for i, (status, offset) in enumerate(STATUS_ROWS)]
    record = KeyRecord("k", "u", models=tuple(r["model_id"] for r in rows), subscriptions={
        r["model_id"]: SubscriptionRecord(r["model_id"], r["status"], r["expires_at"] and r["expires_at"].timestamp())
        for r in rows})
    granted = [r["model_id"] for r in rows if model_problem(record, r["model_id"], NOW) is None]
    assert granted == ["m0", "m3", "m4"]  # active and never expiring or expiring after now
    assert live_model_ids(rows, NOW) == granted
    assert litellm_key_state(record, NOW) == {"models": granted, "blocked": False}


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "active"), ({"revoked_at": datetime.fromtimestamp(NOW + 60, timezone.utc)}, "revoked"),
    ({"is_active": False}, "inactive"), ({"expires_at": datetime.fromtimestamp(NOW, timezone.utc)}, "expired"),
    ({"expires_at": datetime.fromtimestamp(NOW + 1, timezone.utc)}, "active"),
])
def test_a_keys_shown_status_follows_the_request_paths_rule(fields, expected):
    row = {"is_active": True, "revoked_at": None, "expires_at": None, **fields}
    assert key_status(row, NOW) == expected
    record = KeyRecord("k", "u", is_active=row["is_active"],
                       revoked_at=row["revoked_at"] and row["revoked_at"].timestamp(),
                       expires_at=row["expires_at"] and row["expires_at"].timestamp())
    assert (key_problem(record, NOW) is None) == (expected == "active")


def test_a_pattern_is_covered_by_one_active_subscription_on_a_segment_boundary():
    subs = [sub("openai/gpt-4o"), sub("bedrockz/x")]
    assert unsubscribed(["openai/*", "bedrock/*", "*"], subs, NOW) == ["bedrock/*"]
    assert unsubscribed(["*"], [], NOW) == ["*"]


def key(models: tuple[str, ...], subs: dict[str, str], **fields) -> KeyRecord:
    return KeyRecord("k", "u", models=models,
                     subscriptions={m: SubscriptionRecord(m, s) for m, s in subs.items()}, **fields)


@pytest.mark.parametrize(
    ("record", "state"),
    [
        (key(("a", "b"), {"a": "active", "b": "active"}), {"models": ["a", "b"], "blocked": False}),
        (key(("a", "b"), {"a": "active", "b": "cancelled"}), {"models": ["a"], "blocked": False}),
        # nothing usable left: an empty list would mean "all models" to LiteLLM, so block instead
        (key(("a",), {"a": "suspended"}), {"models": ["a"], "blocked": True}),
        (key(("a",), {"a": "active"}, user_active=False), {"models": ["a"], "blocked": True}),
        (key(("a",), {"a": "active"}, is_active=False), {"models": ["a"], "blocked": True}),
        (key(("openai/*", "x"), {"openai/gpt-4o": "active"}), {"models": ["openai/*"], "blocked": False}),
    ],
)
def test_litellm_key_state(record, state):
    assert litellm_key_state(record, NOW) == state


def test_an_expired_subscription_counts_as_gone_for_litellm():
    record = KeyRecord("k", "u", models=("a",), subscriptions={"a": SubscriptionRecord("a", "active", NOW - 1)})
    assert litellm_key_state(record, NOW) == {"models": ["a"], "blocked": True}


def problem(body: type[schema.Body], data) -> tuple[str, str | None]:
    with pytest.raises(AdminError) as caught:
        body.parse(data)
    assert (caught.value.status, caught.value.code) == (422, "INVALID_REQUEST")
    return caught.value.message, caught.value.param


def test_body_validation_is_strict_and_names_the_field():
    assert schema.KeyCreate.parse({"user_id": "u", "models": ["a"], "name": None}) == {"user_id": "u", "models": ["a"]}
    assert problem(schema.KeyCreate, {"user_id": "u", "models": ["a"], "zzz": 1, "aaa": 2}) == (
        "aaa: unknown field (known: user_id, models, name, expires_at, rpm_limit, tpm_limit, max_parallel_requests).", "aaa")
    assert problem(schema.KeyCreate, {"user_id": None, "models": ["a"]}) == ("user_id: required.", "user_id")
    assert problem(schema.KeyCreate, {"user_id": "u", "models": ["a", ""]}) == (
        "models: expected a non-empty list of non-empty strings, got a list.", "models")
    assert problem(schema.UserCreate, {"email": "e@x", "rpm_limit": 1.5}) == (
        "rpm_limit: expected a non-negative integer, got 1.5.", "rpm_limit")
    assert problem(schema.UserCreate, {"email": "e@x", "tpm_limit": -1}) == (
        "tpm_limit: expected a non-negative integer, got -1.", "tpm_limit")
    assert problem(schema.UserCreate, {"email": "e@x", "max_budget": False}) == (
        "max_budget: expected a non-negative number, got false.", "max_budget")
    assert problem(schema.SubscriptionUpdate, {"status": "gone"})[1] == "status"
    assert problem(schema.ModelCreate, "gpt-4o") == ("The request body must be a JSON object, got 'gpt-4o'.", None)


def test_the_json_schema_matches_the_validation():
    described = schema.SubscriptionCreate.model_json_schema()
    assert described["additionalProperties"] is False
    assert described["required"] == ["user_id", "model_id"]
    assert described["properties"]["status"]["enum"] == sorted(schema.STATUSES)
    assert described["properties"]["generate_api_key"]["type"] == "boolean"


def test_cli_table_and_record_rendering():
    rows = [{"id": "k1", "models": ["a", "b"], "name": None, "is_active": True}, {"id": "key-two", "models": []}]
    assert table(rows, ("id", "models", "name", "is_active")) == (
        "id       models  name  is_active\n"
        "k1       a,b     -     yes\n"
        "key-two  -       -     -"
    )
    assert record({"id": "s1", "api_key": {"key": "sk-x"}, "created": False}) == (
        "id       s1\napi_key:\n  key  sk-x\ncreated  no"
    )


def test_expiry_in_the_future_is_accepted_with_or_without_offset():
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    assert future_expiry(soon.isoformat()) == soon
    assert future_expiry(soon.replace(tzinfo=None).isoformat()) == soon
    assert future_expiry(None) is None
