"""gateway/store/keys.py: extracting the key from headers, hashing it, and the cache codec."""

from __future__ import annotations

import hashlib

import pytest

from gateway.store.keys import decode_record, encode_record, extract_key, hash_key, key_prefix
from policies.limits import Limits
from policies.records import EMPTY, KeyRecord, SubscriptionRecord

pytestmark = pytest.mark.unit

KEY = "sk-test-abc123"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([(b"authorization", b"Bearer sk-test-abc123")], KEY),
        ([(b"authorization", b"bearer sk-test-abc123")], KEY),
        ([(b"authorization", b"BEARER sk-test-abc123")], KEY),
        ([(b"authorization", b"BeArEr sk-test-abc123")], KEY),
        ([(b"authorization", b"  Bearer   sk-test-abc123  ")], KEY),
        ([(b"x-api-key", b"sk-test-abc123")], KEY),
        ([(b"x-api-key", b"  sk-test-abc123 ")], KEY),
        ([(b"api-key", b"sk-test-abc123")], KEY),
        # non-bearer authorization is ignored
        ([(b"authorization", b"Basic dXNlcjpwYXNz")], None),
        ([(b"authorization", b"Token sk-test-abc123")], None),
        ([(b"authorization", b"sk-test-abc123")], None),
        ([(b"authorization", b"Bearer")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"authorization", b"Bearer    ")], None),
        ([(b"authorization", b"Bearersk-test-abc123")], None),
        ([(b"x-api-key", b"")], None),
        ([(b"x-api-key", b"   ")], None),
        # ... and the next credential header is used
        ([(b"authorization", b"Basic dXNlcjpwYXNz"), (b"x-api-key", b"sk-test-abc123")], KEY),
        ([(b"x-api-key", b""), (b"api-key", b"sk-test-abc123")], KEY),
        # other headers are not credentials
        ([(b"x-litellm-key", b"sk-x"), (b"cookie", b"key=sk-x"), (b"proxy-authorization", b"Bearer sk-x")], None),
        ([(b"content-type", b"application/json"), (b"api-key", b"sk-test-abc123")], KEY),
        # latin-1 bytes survive
        ([(b"x-api-key", "sk-\u00e9".encode("latin-1"))], "sk-\u00e9"),
    ],
    ids=[
        "none", "bearer", "lower", "upper", "mixed", "spaces", "x-api-key", "x-api-key-spaces", "api-key",
        "basic", "token", "no-scheme", "bearer-only", "bearer-space", "bearer-blank", "no-separator",
        "empty-x-api-key", "blank-x-api-key", "basic-then-x-api-key", "empty-then-api-key", "not-credentials",
        "among-others", "latin-1",
    ],
)
def test_extract_key(headers, expected) -> None:
    assert extract_key(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer sk-A"), (b"x-api-key", b"sk-B")],
        [(b"x-api-key", b"sk-B"), (b"authorization", b"Bearer sk-A")],
        [(b"api-key", b"sk-B"), (b"authorization", b"Bearer sk-A")],
        [(b"x-api-key", b"sk-B"), (b"api-key", b"sk-C"), (b"authorization", b"Bearer sk-A")],
    ],
    ids=["auth-first", "x-api-key-first", "api-key-first", "three"],
)
def test_authorization_wins_whatever_the_header_order(headers) -> None:
    """LiteLLM reads Authorization before api-key and x-api-key; in passthrough mode the
    headers are forwarded, so the gateway must judge the key LiteLLM will use."""
    assert extract_key(headers) == "sk-A"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("sk-test-abc123", hashlib.sha256(b"sk-test-abc123").hexdigest()),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("sk-\u00e9", hashlib.sha256("sk-\u00e9".encode()).hexdigest()),
    ],
    ids=["ascii", "empty", "utf8"],
)
def test_hash_key(key: str, expected: str) -> None:
    digest = hash_key(key)
    assert digest == expected
    assert len(digest) == 64 and digest == digest.lower()


def test_key_prefix() -> None:
    assert key_prefix("sk-test-abc123") == "sk-test"
    assert key_prefix("sk") == "sk"


RECORDS = {
    "minimal": KeyRecord("k1", "u1"),
    "full": KeyRecord(
        "k2",
        "u2",
        is_active=False,
        revoked_at=1_700_000_000.5,
        expires_at=1_800_000_000.25,
        user_active=False,
        models=("gpt-4o", "openai/*", "*"),
        subscriptions={
            "gpt-4o": SubscriptionRecord("gpt-4o", "active", None),
            "openai/o1": SubscriptionRecord("openai/o1", "cancelled", 1_700_000_123.0),
        },
    ),
    "limits": KeyRecord(
        "k4", "u4", models=("gpt-4o",),
        subscriptions={"gpt-4o": SubscriptionRecord("gpt-4o", "active", None, Limits(quota_requests=100, quota_tokens=0,
                                                                                      max_budget=2.5), 1_700_000_000.0)},
        limits=Limits(rpm_limit=5, max_parallel_requests=1),
        user_limits=Limits(tpm_limit=1000, max_budget=100.0),
    ),
    "periods": KeyRecord(
        "k5", "u5", models=("gpt-4o",),
        subscriptions={"gpt-4o": SubscriptionRecord("gpt-4o", "active", None, Limits(budget_duration="7d"))},
        user_limits=Limits(max_budget=5.0, budget_duration="1h"),
    ),
    "unicode": KeyRecord("k3", "usér", models=("caf\u00e9",),
                         subscriptions={"caf\u00e9": SubscriptionRecord("caf\u00e9", "pending")}),
}


@pytest.mark.parametrize("record", list(RECORDS.values()), ids=list(RECORDS))
def test_codec_round_trip(record: KeyRecord) -> None:
    data = encode_record(record)
    assert isinstance(data, bytes)
    decoded = decode_record(data)
    assert decoded == record
    assert isinstance(decoded.models, tuple)
    assert dict(decoded.subscriptions) == dict(record.subscriptions)
    assert encode_record(decoded) == data


def test_a_record_cached_before_limits_existed_decodes_without_limits() -> None:
    old = b'{"key_id":"k1","user_id":"u1","is_active":true,"revoked_at":null,' \
          b'"expires_at":null,"user_active":true,"models":["m"],"subscriptions":[["m","active",null]]}'
    assert decode_record(old) == KeyRecord("k1", "u1", models=("m",),
                                           subscriptions={"m": SubscriptionRecord("m", "active")})


def test_codec_negative_entry() -> None:
    assert encode_record(None) == b"null"
    assert decode_record(b"null") is None
    assert decode_record(encode_record(None)) is None


def test_records_with_nothing_per_model_share_one_empty_mapping():
    """The L1 cache holds one record per key: an empty per-model mapping each would be ~110 bytes a key."""
    plain = decode_record(encode_record(KeyRecord("k", "u", models=("m",))))
    assert plain.model_limits is EMPTY and KeyRecord("k2", "u").subscriptions is EMPTY
    limited = KeyRecord("k3", "u", model_limits={"m": Limits(rpm_limit=1)})
    assert dict(limited.model_limits) == {"m": Limits(rpm_limit=1)} and limited.model_limits is not EMPTY
