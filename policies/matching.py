"""Model names and wildcard patterns.

A key's model list holds exact names ("gpt-4o") and patterns ending in "/*"
("openai/*"). A pattern matches on a "/" segment boundary: "bedrock/*" matches
"bedrock/claude" and "bedrock/eu/claude", never "bedrockz/x" nor "bedrock" itself.
A lone "*" matches every model.
"""

from __future__ import annotations

from typing import Collection


def is_pattern(entry: str) -> bool:
    return entry == "*" or entry.endswith("/*")


def matches(entry: str, model: str) -> bool:
    """True when one key-model entry grants the model name."""
    if entry == model:
        return not is_pattern(entry)
    if entry == "*":
        return bool(model)
    if entry.endswith("/*"):
        prefix = entry[:-1]  # keeps the "/": "openai/"
        return model.startswith(prefix) and len(model) > len(prefix)
    return False


def listed(entries: Collection[str], model: str) -> bool:
    """True when any entry of a key's model list grants the model name."""
    if model in entries and not is_pattern(model):  # the usual case: the name itself is listed
        return True
    for entry in entries:
        if is_pattern(entry) and matches(entry, model):
            return True
    return False
