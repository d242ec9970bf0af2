"""What a request asks for: the model names found in it, checked for agreement.

A model name can arrive in the JSON body or a multipart field ("body"), the query
string ("query") and a path segment ("path"). When more than one is present they
must agree. Fields with which LiteLLM sends a request to other models (fallbacks)
are added to the facts so each one is checked like `model`; fields that let a
client hand LiteLLM a deployment of its own are refused outright.
"""

from __future__ import annotations

from typing import Any, Mapping

from policies.records import Code, Deny, RequestFacts

MAX_MODEL_NAME = 256

# Request fields LiteLLM routes to other models; each entry is checked like `model`.
FALLBACK_FIELDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")

# Request fields that would let a client choose a deployment or credentials itself.
REFUSED_FIELDS = ("user_config", "model_list", "api_base", "base_url", "api_key")
_ROUTING_FIELDS = frozenset(FALLBACK_FIELDS + REFUSED_FIELDS)


def _name_problem(source: str, value: Any) -> Deny | None:
    if not isinstance(value, str) or not value.strip():
        return Deny(Code.INVALID_REQUEST, detail=f"`model` in the {source} must be a non-empty string")
    if len(value) > MAX_MODEL_NAME:
        return Deny(Code.INVALID_REQUEST, detail=f"`model` in the {source} is longer than {MAX_MODEL_NAME} characters")
    return None


def _fallback_names(field: str, value: Any) -> list[str] | Deny:
    """The model names in one fallbacks-like field, in every shape LiteLLM accepts."""
    shape_error = Deny(
        Code.INVALID_REQUEST,
        detail=f"`{field}` must be a list of model names or of objects with a `model` name",
    )
    if not isinstance(value, list):
        return shape_error
    names: list[str] = []
    for entry in value:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("model"), str):
            refused = next((f for f in REFUSED_FIELDS if f in entry), None)
            if refused is not None:
                return Deny(Code.INVALID_REQUEST, detail=f"the `{refused}` field is not allowed in `{field}` entries")
            names.append(entry["model"])
        elif isinstance(entry, dict) and entry and "model" not in entry:
            # router style: {"primary": ["fallback-a", "fallback-b"]}
            for primary, targets in entry.items():
                if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                    return shape_error
                names.append(primary)
                names.extend(targets)
        else:
            return shape_error
    for name in names:
        problem = _name_problem(f"`{field}` list", name)
        if problem is not None:
            return problem
    return names


def request_facts(
    sources: Mapping[str, Any],
    body: Mapping[str, Any] | None = None,
    *,
    model_required: bool = True,
) -> RequestFacts | Deny:
    """Facts from the model names found per source ({"body": ..., "query": ..., "path": ...}).

    `body` is the parsed JSON object, when there is one, for its routing fields.
    """
    primary: str | None = None
    primary_source = ""
    for source, value in sources.items():
        if value is None:
            continue
        problem = _name_problem(source, value)
        if problem is not None:
            return problem
        if primary is None:
            primary, primary_source = value, source
        elif value != primary:
            return Deny(
                Code.INVALID_REQUEST,
                detail=f"conflicting model names: {primary!r} in the {primary_source}, {value!r} in the {source}",
            )
    if primary is None:
        if model_required:
            return Deny(Code.MODEL_REQUIRED)
        return RequestFacts(models=())
    if not body or _ROUTING_FIELDS.isdisjoint(body):  # one C-level check for the usual body with neither
        return RequestFacts((primary,))
    for field in REFUSED_FIELDS:
        if field in body:
            return Deny(Code.INVALID_REQUEST, detail=f"the `{field}` field is not allowed through this gateway")
    models = [primary]
    for field in FALLBACK_FIELDS:
        if field in body and body[field] is not None:
            names = _fallback_names(field, body[field])
            if isinstance(names, Deny):
                return names
            models.extend(name for name in names if name not in models)
    return RequestFacts(models=tuple(models))
