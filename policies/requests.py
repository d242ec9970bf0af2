"""What a request asks for: the model names found in it, checked for agreement.

A model name can arrive in the body (a JSON object or a form: "body"), the query
string ("query") and a path segment ("path"); gateway/serving/reader.py finds them, reading
the request as LiteLLM will. When more than one is present they must agree. Fields
with which LiteLLM sends a request to other models (fallbacks) are added to the facts
so each one is checked like `model`; fields that let a client pick a deployment,
an endpoint or credentials of its own are refused outright, at the top level, inside
fallback entries and inside the objects LiteLLM spreads into the provider call.
"""

from __future__ import annotations

from typing import Any, Mapping

from policies.records import Code, Deny, RequestFacts

MAX_MODEL_NAME = 256

# Request fields LiteLLM routes to other models; each entry is checked like `model`.
FALLBACK_FIELDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")

# Request fields that would let a client choose a deployment, an endpoint or credentials
# itself (LiteLLM 1.108: route_llm_request.py, router_utils/clientside_credential_handler.py,
# types/router.py CredentialLiteLLMParams, proxy/auth/auth_utils.py). tests/unit/
# test_litellm_fields.py checks this list against the installed LiteLLM's own.
REFUSED_FIELDS = (
    # a deployment list or router of the client's own; per-request router settings (its
    # fallbacks, routing strategy); `model` read as a deployment's own provider model name
    "user_config", "model_list", "router_settings_override", "specific_deployment",
    # clientside credentials and endpoints: LiteLLM calls the provider directly with them
    "api_key", "api_base", "base_url",
    # headers sent to the provider (an Authorization of the client's) and the provider account
    "headers", "extra_headers", "default_headers", "provider_specific_header", "organization",
    # provider credentials, identities, accounts and endpoints (CredentialLiteLLMParams, less
    # api_version, which picks an Azure API version and is also taken from the query string)
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name",
    "aws_session_name", "aws_profile_name", "aws_role_name", "aws_web_identity_token",
    "aws_sts_endpoint", "aws_external_id", "aws_session_tags", "aws_bedrock_runtime_endpoint",
    "aws_bedrock_project_id", "aws_batch_role_arn", "region_name", "bedrock_tags",
    "vertex_project", "vertex_location", "vertex_credentials", "watsonx_region_name",
    "azure_ad_token", "azure_ad_token_provider", "azure_username", "azure_password", "azure_scope",
    "tenant_id", "client_id", "client_secret",
    "s3_access_key_id", "s3_secret_access_key", "s3_region_name", "s3_endpoint_url",
    "s3_bucket_name", "s3_output_bucket_name", "s3_bucket_owner", "s3_encryption_key_id",
    "bucket_name", "gcs_bucket_name",
    "token_exchange_endpoint", "token_exchange_audience", "token_exchange_scope", "token_exchange_profile",
    "openai_identity_provider_id", "openai_identity_token_file", "openai_service_account_id",
    "anthropic_disable_workload_identity_federation", "anthropic_federation_rule_id",
    "anthropic_federation_workspace_id", "anthropic_identity_source", "anthropic_identity_token",
    "anthropic_identity_token_file", "anthropic_issuer_audience", "anthropic_issuer_signing_key_ref",
    "anthropic_issuer_subject", "anthropic_issuer_ttl_seconds", "anthropic_issuer_url",
    "anthropic_keycloak_auth_method", "anthropic_keycloak_client_id", "anthropic_keycloak_client_secret_ref",
    "anthropic_keycloak_scope", "anthropic_keycloak_token_url", "anthropic_organization_id",
    "anthropic_service_account_id", "github_copilot_auth_type",
)

# Objects LiteLLM merges into the provider call (`extra_body` into the provider's JSON, where
# a `model` would replace the deployment's): inside them `model`, the fallback fields and the
# refused fields are all refused.
NESTED_CONFIG_FIELDS = ("extra_body", "litellm_embedding_config")

# How deep fallback entries may nest ({"model": "a", "fallbacks": [...]}): deeper is refused.
MAX_FALLBACK_DEPTH = 4

_REFUSED = frozenset(REFUSED_FIELDS)
_NESTED_REFUSED = _REFUSED | frozenset(FALLBACK_FIELDS) | {"model"}
_ROUTING_FIELDS = frozenset(FALLBACK_FIELDS + REFUSED_FIELDS + NESTED_CONFIG_FIELDS)


def _invalid(detail: str) -> Deny:
    return Deny(Code.INVALID_REQUEST, detail=detail)


def _name_problem(source: str, value: Any) -> Deny | None:
    if not isinstance(value, str) or not value.strip():
        return _invalid(f"`model` in the {source} must be a non-empty string")
    if len(value) > MAX_MODEL_NAME:
        return _invalid(f"`model` in the {source} is longer than {MAX_MODEL_NAME} characters")
    if "," in value:
        # LiteLLM's /chat/completions calls every model of a comma-separated `model` at once
        return _invalid(f"`model` in the {source} must name one model (LiteLLM reads a ',' as a list of models)")
    return None


def _refused(fields: Mapping[str, Any], where: str) -> Deny | None:
    if _REFUSED.isdisjoint(fields):
        return None
    field = next(f for f in REFUSED_FIELDS if f in fields)
    return _invalid(f"the `{field}` field is not allowed {where}")


def _fallback_names(field: str, value: Any, names: list[str], depth: int = 0) -> Deny | None:
    """Add the model names of one fallbacks-like field to `names`, in every shape LiteLLM accepts:
    names, objects with a `model` (whose own fallback fields are followed), and router-style
    objects ({"primary": ["fallback-a", "fallback-b"]}, the primary counted too)."""
    shape_error = _invalid(f"`{field}` must be a list of model names or of objects with a `model` name")
    if not isinstance(value, list):
        return shape_error
    if depth > MAX_FALLBACK_DEPTH:
        return _invalid(f"`{field}` entries nest more than {MAX_FALLBACK_DEPTH} deep")
    for entry in value:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("model"), str):
            problem = _refused(entry, f"in `{field}` entries")
            if problem is not None:
                return problem
            names.append(entry["model"])
            for inner in FALLBACK_FIELDS:
                if entry.get(inner) is not None:
                    problem = _fallback_names(inner, entry[inner], names, depth + 1)
                    if problem is not None:
                        return problem
        elif isinstance(entry, dict) and entry and "model" not in entry:
            for primary, targets in entry.items():
                if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                    return shape_error
                names.append(primary)
                names.extend(targets)
        else:
            return shape_error
    return None


def _body_models(body: Mapping[str, Any], primary: str) -> RequestFacts | Deny:
    """The facts of a body that holds at least one routing field."""
    problem = _refused(body, "through this gateway")
    if problem is not None:
        return problem
    for field in NESTED_CONFIG_FIELDS:
        nested = body.get(field)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            return _invalid(f"`{field}` must be an object")
        if not _NESTED_REFUSED.isdisjoint(nested):
            inner = next(f for f in ("model", *FALLBACK_FIELDS, *REFUSED_FIELDS) if f in nested)
            return _invalid(f"the `{inner}` field is not allowed in `{field}`")
    models = [primary]
    for field in FALLBACK_FIELDS:
        if body.get(field) is None:
            continue
        names: list[str] = []
        problem = _fallback_names(field, body[field], names)
        if problem is not None:
            return problem
        for name in names:
            problem = _name_problem(f"`{field}` list", name)
            if problem is not None:
                return problem
            if name not in models:
                models.append(name)
    return RequestFacts(models=tuple(models))


def request_facts(
    sources: Mapping[str, Any],
    body: Mapping[str, Any] | None = None,
    *,
    model_required: bool = True,
) -> RequestFacts | Deny:
    """Facts from the model names found per source ({"path": ..., "body": ..., "query": ...}).

    `body` holds the body's fields as LiteLLM gets them (the JSON object, or a form's
    fields), when there are any, for its routing fields.
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
            return _invalid(f"conflicting model names: {primary!r} in the {primary_source}, {value!r} in the {source}")
    if primary is None:
        if model_required:
            return Deny(Code.MODEL_REQUIRED)
        return RequestFacts(models=())
    if not body or _ROUTING_FIELDS.isdisjoint(body):  # one C-level check for the usual body with none
        return RequestFacts((primary,))
    return _body_models(body, primary)
