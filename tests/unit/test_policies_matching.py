"""policies/matching.py: exact names, "prefix/*" patterns on a "/" boundary, and "*"."""

from __future__ import annotations

import random
import string

import pytest

from policies.matching import is_pattern, listed, matches

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("entry", "model", "expected"),
    [
        # exact names
        ("gpt-4o", "gpt-4o", True),
        ("gpt-4o", "gpt-4o-mini", False),
        ("gpt-4o", "GPT-4o", False),
        ("gpt-4o", "gpt-4o ", False),
        ("gpt-4o", "", False),
        ("openai/gpt-4o", "openai/gpt-4o", True),
        ("openai/gpt-4o", "openai/gpt-4", False),
        # prefix patterns match on a segment boundary
        ("openai/*", "openai/gpt-4o", True),
        ("openai/*", "openai/eu/x", True),
        ("openai/*", "openai/x/", True),
        ("openai/*", "openai", False),
        ("openai/*", "openai/", False),
        ("openai/*", "openaiz/x", False),
        ("openai/*", "openai-x/y", False),
        ("openai/*", "xopenai/y", False),
        ("openai/*", "OpenAI/gpt-4o", False),
        ("openai/*", "azure/openai/gpt-4o", False),
        ("openai/*", "", False),
        ("bedrock/*", "bedrockz/x", False),
        ("bedrock/*", "bedrock/claude", True),
        ("bedrock/eu/*", "bedrock/eu/claude", True),
        ("bedrock/eu/*", "bedrock/us/claude", False),
        ("bedrock/eu/*", "bedrock/eu", False),
        # "*" matches every non-empty name
        ("*", "gpt-4o", True),
        ("*", "openai/gpt-4o", True),
        ("*", "x", True),
        ("*", "", False),
        # pattern entries never match themselves literally
        ("openai/*", "openai/*", False),
        ("*", "*", False),
        # a "*" that is not a trailing "/*" is no pattern: only the literal name
        ("openai*", "openai-gpt", False),
        ("openai*", "openai*", True),
        ("open*/x", "openai/x", False),
        ("*/gpt-4o", "openai/gpt-4o", False),
        # an empty entry grants no real name ("" itself never reaches matching:
        # policies/requests.py refuses empty model names)
        ("", "gpt-4o", False),
    ],
    ids=lambda v: repr(v),
)
def test_matches(entry: str, model: str, expected: bool) -> None:
    assert matches(entry, model) is expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("*", True),
        ("openai/*", True),
        ("a/b/*", True),
        ("/*", True),
        ("openai", False),
        ("openai*", False),
        ("openai/", False),
        ("*/x", False),
        ("", False),
    ],
    ids=lambda v: repr(v),
)
def test_is_pattern(entry: str, expected: bool) -> None:
    assert is_pattern(entry) is expected


@pytest.mark.parametrize(
    ("entries", "model", "expected"),
    [
        ((), "gpt-4o", False),
        (["gpt-4o"], "gpt-4o", True),
        (("gpt-4o", "openai/*"), "openai/o1", True),
        (("gpt-4o", "openai/*"), "anthropic/claude", False),
        (("openai/*",), "openai/*", False),
        (("openai/*", "*"), "*", False),
        (("a", "b", "c"), "c", True),
        (iter(["x", "y"]), "y", True),  # any iterable
    ],
    ids=["empty", "exact", "pattern", "no-entry", "pattern-literal", "star-literal", "last", "iterator"],
)
def test_listed(entries, model: str, expected: bool) -> None:
    assert listed(entries, model) is expected


_ALPHABET = string.ascii_lowercase[:4] + "/-*."


def _names(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 8))) for _ in range(count)]


def test_matching_never_grants_across_a_non_boundary() -> None:
    """Property (seeded, ~40k pairs): what a pattern grants is exactly "prefix/" plus something."""
    rng = random.Random(20240501)
    entries = _names(rng, 200) + ["*", "a/*", "a/b/*", "/*"]
    models = _names(rng, 200) + ["a", "a/", "ab/x", "a/x", "a/b/c"]
    for entry in entries:
        for model in models:
            got = matches(entry, model)
            if entry == "*":
                expected = model != "*" and model != ""
            elif entry.endswith("/*"):
                prefix = entry[:-1]
                expected = model != entry and model.startswith(prefix) and len(model) > len(prefix)
            else:
                expected = entry == model
            assert got is expected, (entry, model)
            if got and entry.endswith("/*"):
                # the character right after the entry's prefix is never part of a longer segment
                assert model[: len(entry) - 1] == entry[:-1]
                assert model[len(entry) - 2] == "/"
