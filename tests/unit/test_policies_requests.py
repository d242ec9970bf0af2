"""policies/requests.py: model names per source must agree; fallbacks are checked; some fields are refused."""

from __future__ import annotations

import pytest

from policies.records import Code, Deny, RequestFacts
from policies.requests import (
    FALLBACK_FIELDS,
    MAX_FALLBACK_DEPTH,
    MAX_MODEL_NAME,
    NESTED_CONFIG_FIELDS,
    REFUSED_FIELDS,
    request_facts,
)

pytestmark = pytest.mark.unit


def invalid(detail: str) -> Deny:
    return Deny(Code.INVALID_REQUEST, detail=detail)


def facts(*models: str) -> RequestFacts:
    return RequestFacts(models=models)


# -- sources: body / query / path --------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"body": "gpt-4o"}, facts("gpt-4o")),
        ({"query": "gpt-4o"}, facts("gpt-4o")),
        ({"path": "gpt-4o"}, facts("gpt-4o")),
        ({"body": "gpt-4o", "query": "gpt-4o"}, facts("gpt-4o")),
        ({"path": "gpt-4o", "body": "gpt-4o", "query": "gpt-4o"}, facts("gpt-4o")),
        ({"body": None, "query": "gpt-4o"}, facts("gpt-4o")),
        ({"path": "gpt-4o", "body": None, "query": None}, facts("gpt-4o")),
        ({"body": "openai/gpt-4o"}, facts("openai/gpt-4o")),
        ({"body": "x" * MAX_MODEL_NAME}, facts("x" * MAX_MODEL_NAME)),
        # conflicts name both values and both sources
        (
            {"body": "gpt-4o", "query": "o1"},
            invalid("conflicting model names: 'gpt-4o' in the body, 'o1' in the query"),
        ),
        (
            {"path": "gpt-4o", "body": "o1"},
            invalid("conflicting model names: 'gpt-4o' in the path, 'o1' in the body"),
        ),
        (
            {"path": "a", "body": "a", "query": "b"},
            invalid("conflicting model names: 'a' in the path, 'b' in the query"),
        ),
        (
            {"body": "gpt-4o", "query": "GPT-4o"},
            invalid("conflicting model names: 'gpt-4o' in the body, 'GPT-4o' in the query"),
        ),
        (
            {"body": "gpt-4o", "query": "gpt-4o "},
            invalid("conflicting model names: 'gpt-4o' in the body, 'gpt-4o ' in the query"),
        ),
        # bad values
        ({"body": ""}, invalid("`model` in the body must be a non-empty string")),
        ({"body": "   "}, invalid("`model` in the body must be a non-empty string")),
        ({"query": ""}, invalid("`model` in the query must be a non-empty string")),
        ({"body": 42}, invalid("`model` in the body must be a non-empty string")),
        ({"body": ["gpt-4o"]}, invalid("`model` in the body must be a non-empty string")),
        ({"body": {"name": "gpt-4o"}}, invalid("`model` in the body must be a non-empty string")),
        ({"body": True}, invalid("`model` in the body must be a non-empty string")),
        ({"body": "x" * (MAX_MODEL_NAME + 1)}, invalid(f"`model` in the body is longer than {MAX_MODEL_NAME} characters")),
        # a bad value is refused even when another source is fine
        ({"query": "gpt-4o", "body": ""}, invalid("`model` in the body must be a non-empty string")),
        # nothing named
        ({}, Deny(Code.MODEL_REQUIRED)),
        ({"body": None}, Deny(Code.MODEL_REQUIRED)),
        ({"body": None, "query": None, "path": None}, Deny(Code.MODEL_REQUIRED)),
    ],
    ids=[
        "body", "query", "path", "body+query", "all-three", "body-none", "path-only",
        "slash-name", "max-length",
        "conflict-body-query", "conflict-path-body", "conflict-third", "conflict-case", "conflict-space",
        "empty", "blank", "empty-query", "int", "list", "dict", "bool", "too-long", "bad-second",
        "none", "none-body", "all-none",
    ],
)
def test_sources(sources: dict, expected) -> None:
    assert request_facts(sources) == expected


@pytest.mark.parametrize(
    ("sources", "body", "expected"),
    [
        ({}, None, facts()),
        ({"body": None}, {"input": "x"}, facts()),
        ({"body": "m"}, None, facts("m")),
    ],
    ids=["nothing", "no-model", "model-given"],
)
def test_model_not_required(sources: dict, body, expected) -> None:
    assert request_facts(sources, body, model_required=False) == expected


# -- fallback fields ------------------------------------------------------------------

SHAPE = "`{field}` must be a list of model names or of objects with a `model` name"


@pytest.mark.parametrize("field", FALLBACK_FIELDS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, facts("a")),
        ([], facts("a")),
        (["b"], facts("a", "b")),
        (["b", "c"], facts("a", "b", "c")),
        (["b", "b", "a", "c"], facts("a", "b", "c")),  # de-duplicated, order kept
        ([{"model": "b"}], facts("a", "b")),
        ([{"model": "b", "messages": []}, "c"], facts("a", "b", "c")),
        ([{"a": ["b", "c"]}], facts("a", "b", "c")),  # router style
        ([{"x": ["b"], "y": []}], facts("a", "x", "b", "y")),
        # bad shapes
        ("b", "shape"),
        ({"model": "b"}, "shape"),
        (42, "shape"),
        ([42], "shape"),
        ([None], "shape"),
        ([["b"]], "shape"),
        ([{}], "shape"),
        ([{"model": 42}], "shape"),
        ([{"model": None}], "shape"),
        ([{"model": ["b"]}], "shape"),
        ([{"a": "b"}], "shape"),
        ([{"a": ["b", 1]}], "shape"),
        ([{"a": None}], "shape"),
        # names checked like `model`
        ([""], "empty"),
        (["  "], "empty"),
        ([{"model": ""}], "empty"),
        ([{"": ["b"]}], "empty"),
        ([{"a": [""]}], "empty"),
        (["x" * (MAX_MODEL_NAME + 1)], "long"),
    ],
    ids=[
        "null", "empty", "one", "two", "dedup", "dict", "dict-extra-keys", "router", "router-2",
        "str", "dict-not-list", "int", "int-entry", "none-entry", "nested-list", "empty-dict",
        "model-int", "model-none", "model-list", "router-str", "router-int", "router-none",
        "empty-name", "blank-name", "empty-model", "empty-primary", "empty-target", "too-long",
    ],
)
def test_fallbacks(field: str, value, expected) -> None:
    if expected == "shape":
        expected = invalid(SHAPE.format(field=field))
    elif expected == "empty":
        expected = invalid(f"`model` in the `{field}` list must be a non-empty string")
    elif expected == "long":
        expected = invalid(f"`model` in the `{field}` list is longer than {MAX_MODEL_NAME} characters")
    assert request_facts({"body": "a"}, {"model": "a", field: value}) == expected


def test_every_fallback_field_adds_its_models() -> None:
    body = {
        "model": "a",
        "fallbacks": ["b"],
        "context_window_fallbacks": [{"model": "c"}],
        "content_policy_fallbacks": [{"a": ["d"]}],
    }
    assert request_facts({"body": "a"}, body) == facts("a", "b", "c", "d")


def test_fallbacks_field_names() -> None:
    assert FALLBACK_FIELDS == ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


# -- refused fields ---------------------------------------------------------------------


@pytest.mark.parametrize("field", REFUSED_FIELDS)
@pytest.mark.parametrize("value", [None, "http://evil.example", {"model_list": []}, []], ids=["null", "str", "dict", "list"])
def test_refused_fields(field: str, value) -> None:
    assert request_facts({"body": "a"}, {"model": "a", field: value}) == invalid(
        f"the `{field}` field is not allowed through this gateway"
    )


def test_refused_field_names() -> None:
    assert set(REFUSED_FIELDS) >= {"user_config", "model_list", "api_base", "base_url", "api_key"}


def test_refused_fields_are_checked_before_fallbacks() -> None:
    body = {"model": "a", "fallbacks": 42, "api_base": "http://x"}
    assert request_facts({"body": "a"}, body) == invalid("the `api_base` field is not allowed through this gateway")


@pytest.mark.parametrize("field", ["api_base", "base_url", "api_key"])
def test_fallback_entries_cannot_carry_deployment_fields(field: str) -> None:
    """LiteLLM applies the other keys of a fallback object to the fallback call, so
    `{"model": "a", "api_base": ...}` would pick a deployment; refuse it like the top level."""
    body = {"model": "a", "fallbacks": [{"model": "a", field: "http://evil.example"}]}
    result = request_facts({"body": "a"}, body)
    assert isinstance(result, Deny) and result.code is Code.INVALID_REQUEST, result


def test_conflict_is_reported_before_fallbacks() -> None:
    body = {"model": "a", "fallbacks": ["z"]}
    assert request_facts({"body": "a", "query": "b"}, body) == invalid(
        "conflicting model names: 'a' in the body, 'b' in the query"
    )


# -- what LiteLLM reads beyond `model` (issue 13) ------------------------------------------------


@pytest.mark.parametrize("source", ["body", "query", "path"])
@pytest.mark.parametrize("name", ["a,b", "a, b", ",", "a,"])
def test_a_comma_separated_model_is_refused(source: str, name: str) -> None:
    """LiteLLM's /chat/completions calls every model of `"model": "a,b"` at once (batch completion)."""
    assert request_facts({source: name}) == invalid(
        f"`model` in the {source} must name one model (LiteLLM reads a ',' as a list of models)"
    )


def test_a_comma_in_a_fallback_is_refused() -> None:
    assert request_facts({"body": "a"}, {"model": "a", "fallbacks": ["b,c"]}) == invalid(
        "`model` in the `fallbacks` list must name one model (LiteLLM reads a ',' as a list of models)"
    )


@pytest.mark.parametrize(
    ("fallbacks", "expected"),
    [
        ([{"model": "b", "fallbacks": ["c"]}], facts("a", "b", "c")),
        ([{"model": "b", "context_window_fallbacks": [{"model": "c", "content_policy_fallbacks": ["d"]}]}],
         facts("a", "b", "c", "d")),
        ([{"model": "b", "fallbacks": [{"c": ["d"]}]}], facts("a", "b", "c", "d")),
        ([{"model": "b", "fallbacks": None}], facts("a", "b")),
        ([{"model": "b", "fallbacks": "c"}], invalid(SHAPE.format(field="fallbacks"))),
        ([{"model": "b", "fallbacks": [{"model": "c", "api_base": "http://x"}]}],
         invalid("the `api_base` field is not allowed in `fallbacks` entries")),
    ],
    ids=["one-level", "two-levels", "router-inside", "null-inside", "bad-shape-inside", "refused-inside"],
)
def test_fallback_entries_with_fallbacks_of_their_own_are_followed(fallbacks, expected) -> None:
    """LiteLLM walks a fallback object's own fallback fields (auth_utils._iter_fallback_targets)."""
    assert request_facts({"body": "a"}, {"model": "a", "fallbacks": fallbacks}) == expected


def test_fallbacks_nested_too_deep_are_refused() -> None:
    nested: list = ["z"]
    for _ in range(MAX_FALLBACK_DEPTH + 1):
        nested = [{"model": "b", "fallbacks": nested}]
    assert request_facts({"body": "a"}, {"model": "a", "fallbacks": nested}) == invalid(
        f"`fallbacks` entries nest more than {MAX_FALLBACK_DEPTH} deep"
    )


@pytest.mark.parametrize("field", NESTED_CONFIG_FIELDS)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"top_k": 3}, facts("a")),
        ({}, facts("a")),
        (None, facts("a")),
        ({"model": "b"}, "the `model` field is not allowed in `{field}`"),
        ({"fallbacks": ["b"]}, "the `fallbacks` field is not allowed in `{field}`"),
        ({"api_key": "sk-x"}, "the `api_key` field is not allowed in `{field}`"),
        ({"aws_access_key_id": "x"}, "the `aws_access_key_id` field is not allowed in `{field}`"),
        ('{"model": "b"}', "`{field}` must be an object"),
        ([{"model": "b"}], "`{field}` must be an object"),
    ],
    ids=["harmless", "empty", "null", "model", "fallbacks", "api-key", "aws", "json-string", "list"],
)
def test_objects_merged_into_the_provider_call(field: str, value, expected) -> None:
    """`extra_body` is merged into the provider's JSON: a `model` there replaces the deployment's."""
    if isinstance(expected, str):
        expected = invalid(expected.format(field=field))
    assert request_facts({"body": "a"}, {"model": "a", field: value}) == expected


@pytest.mark.parametrize(
    "field", ["router_settings_override", "specific_deployment", "extra_headers", "headers", "aws_access_key_id",
              "vertex_credentials", "azure_ad_token", "client_secret", "organization"],
)
def test_fields_that_pick_a_deployment_or_credentials_are_refused(field: str) -> None:
    assert field in REFUSED_FIELDS
    assert request_facts({"body": "a"}, {"model": "a", field: "x"}) == invalid(
        f"the `{field}` field is not allowed through this gateway"
    )


def test_api_version_is_not_refused() -> None:
    """It picks an Azure API version (LiteLLM also takes it from the query's api-version), not a deployment."""
    assert request_facts({"body": "a"}, {"model": "a", "api_version": "2024-02-01"}) == facts("a")
